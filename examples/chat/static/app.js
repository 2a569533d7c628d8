// The chat page: joins a room over a WebSocket, renders its history,
// messages and members, and reconnects (with backoff) when the connection
// drops, for example while the server restarts.
"use strict";

const $ = (id) => document.getElementById(id);
let ws = null;
let me = "";
let room = "";
let leaving = false;
let retry = 0;
let pinger = null;
let joined = false; // a hello was received since join(): later ones are reconnects

function setStatus(text, online) {
  $("status").textContent = text;
  $("status").className = "status " + (online ? "online" : "offline");
}

function fmtTime(ms) {
  return new Date(ms).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

function addMessage(m) {
  const li = document.createElement("li");
  li.dataset.id = m.id;
  if (m.nick === me) li.classList.add("mine");
  const who = document.createElement("span");
  who.className = "who";
  who.textContent = m.nick;
  const text = document.createElement("span");
  text.className = "text";
  text.textContent = m.text;
  const time = document.createElement("time");
  time.textContent = fmtTime(m.at);
  li.append(who, text, time);
  $("messages").append(li);
  li.scrollIntoView({ block: "end" });
}

function addNotice(text) {
  const li = document.createElement("li");
  li.className = "notice";
  li.textContent = text;
  $("messages").append(li);
}

function setMembers(list) {
  const ul = $("members");
  ul.replaceChildren(...(list || []).map((n) => {
    const li = document.createElement("li");
    li.textContent = n;
    return li;
  }));
  $("count").textContent = "(" + (list || []).length + ")";
}

function connect() {
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  const url = proto + "//" + location.host + "/rooms/" + encodeURIComponent(room) +
    "/ws?nick=" + encodeURIComponent(me);
  setStatus("connecting…", false);
  ws = new WebSocket(url);
  ws.onopen = () => {
    retry = 0;
    setStatus("connected as " + me, true);
    clearInterval(pinger);
    // Answered by the runtime itself: it does not wake a hibernated room.
    pinger = setInterval(() => ws.readyState === WebSocket.OPEN && ws.send("ping"), 30000);
  };
  ws.onmessage = (e) => {
    if (e.data === "pong") return;
    const ev = JSON.parse(e.data);
    switch (ev.type) {
      case "hello":
        $("messages").replaceChildren();
        (ev.history || []).forEach(addMessage);
        addNotice((joined ? "Reconnected to #" : "You joined #") + room + " as " + ev.you);
        joined = true;
        setMembers(ev.members);
        break;
      case "message":
        addMessage(ev.message);
        break;
      case "members":
        setMembers(ev.members);
        break;
      case "error":
        addNotice("⚠ " + ev.error);
        break;
    }
  };
  ws.onclose = () => {
    clearInterval(pinger);
    if (leaving) return;
    const delay = Math.min(10000, 250 * 2 ** retry++);
    setStatus("disconnected, retrying in " + (delay / 1000).toFixed(1) + " s", false);
    setTimeout(connect, delay);
  };
}

function join(r, n) {
  room = r.trim();
  me = n.trim();
  if (!room || !me) return;
  leaving = false;
  joined = false;
  const q = new URLSearchParams({ room, nick: me });
  history.replaceState(null, "", "?" + q);
  $("room-title").textContent = room;
  $("join").classList.add("hidden");
  $("chat").classList.remove("hidden");
  connect();
  $("text").focus();
}

$("join").addEventListener("submit", (e) => {
  e.preventDefault();
  join($("room").value, $("nick").value);
});

$("say").addEventListener("submit", (e) => {
  e.preventDefault();
  const text = $("text").value.trim();
  if (!text || !ws || ws.readyState !== WebSocket.OPEN) return;
  ws.send(JSON.stringify({ type: "say", text }));
  $("text").value = "";
});

$("leave").addEventListener("click", () => {
  leaving = true;
  if (ws) ws.close(1000, "left");
  $("chat").classList.add("hidden");
  $("join").classList.remove("hidden");
  history.replaceState(null, "", location.pathname);
  setStatus("not connected", false);
});

const params = new URLSearchParams(location.search);
if (params.get("room")) $("room").value = params.get("room");
if (params.get("nick")) $("nick").value = params.get("nick");
if (params.get("room") && params.get("nick")) join(params.get("room"), params.get("nick"));
