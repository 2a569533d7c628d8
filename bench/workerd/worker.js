// The workerd side of the benchmark comparison: the HTTP contract of
// bench/server (see bench/README.md) written as a Worker plus SQLite-backed
// Durable Objects, the way a Cloudflare user would write it. Each route does
// the same storage work as its Go twin in bench/server/app.go, and reaches
// the object the same way (an RPC call on a stub got by name).
import { DurableObject } from "cloudflare:workers";

// Counter keeps one counter in its SQLite table (bench/server: Counter).
export class Counter extends DurableObject {
  constructor(ctx, env) {
    super(ctx, env);
    this.sql = ctx.storage.sql;
    this.sql.exec(
      "CREATE TABLE IF NOT EXISTS counter (id INTEGER PRIMARY KEY CHECK (id = 1), value INTEGER NOT NULL)",
    );
  }

  // inc reads the counter, adds one and upserts it.
  inc() {
    const v = this.get() + 1;
    this.sql.exec(
      "INSERT INTO counter (id, value) VALUES (1, ?) ON CONFLICT (id) DO UPDATE SET value = excluded.value",
      v,
    );
    return v;
  }

  // get returns the counter, 0 if it was never incremented.
  get() {
    const rows = this.sql.exec("SELECT value FROM counter WHERE id = 1").toArray();
    return rows.length === 0 ? 0 : rows[0].value;
  }
}

// KV stores strings in the object's key-value storage (bench/server: KV).
// On a SQLite-backed object, storage.put/get write the built-in KV table.
export class KV extends DurableObject {
  async put(k, v) {
    await this.ctx.storage.put(k, v);
  }

  async lookup(k) {
    const v = await this.ctx.storage.get(k);
    return v === undefined ? { ok: false } : { ok: true, value: v };
  }
}

// Notes inserts rows through an RPC method (bench/server: Notes).
export class Notes extends DurableObject {
  constructor(ctx, env) {
    super(ctx, env);
    this.sql = ctx.storage.sql;
    this.sql.exec("CREATE TABLE IF NOT EXISTS notes (id INTEGER PRIMARY KEY, note TEXT NOT NULL)");
  }

  add(note) {
    return this.sql.exec("INSERT INTO notes (note) VALUES (?) RETURNING id", note).one().id;
  }
}

// Room is a chat room on the hibernatable WebSocket API: every text message
// a client sends is sent to every socket in the room, the sender included.
export class Room extends DurableObject {
  async fetch(request) {
    if (request.headers.get("Upgrade") !== "websocket") {
      return new Response("want a WebSocket upgrade", { status: 426 });
    }
    const [client, server] = Object.values(new WebSocketPair());
    this.ctx.acceptWebSocket(server);
    return new Response(null, { status: 101, webSocket: client });
  }

  webSocketMessage(ws, msg) {
    for (const s of this.ctx.getWebSockets()) {
      try {
        s.send(msg);
      } catch {
        // A socket closing concurrently; its close handler cleans up.
      }
    }
  }

  webSocketClose(ws, code) {
    try {
      ws.close(code === 1005 || code === 1006 ? 1000 : code, "bye");
    } catch {
      // Already closed.
    }
  }
}

const validName = /^[A-Za-z0-9._-]{1,256}$/;

function text(body, status = 200) {
  return new Response(String(body), { status, headers: { "Content-Type": "text/plain; charset=utf-8" } });
}

export default {
  async fetch(request, env) {
    if (request.method !== "GET") {
      return text("method not allowed", 405);
    }
    const url = new URL(request.url);
    const parts = url.pathname.split("/"); // ["", route, name, verb]
    if (url.pathname === "/ping") {
      return text("pong");
    }
    const route = parts.length === 4 ? `${parts[1]}/${parts[3]}` : parts.length === 3 ? parts[1] : "";
    const name = parts[2];
    if (route !== "" && !validName.test(name)) {
      return text("bad name: want 1-256 bytes of [A-Za-z0-9._-]", 400);
    }
    const q = url.searchParams;
    try {
      switch (route) {
        case "counter/inc":
          return text(await env.COUNTER.get(env.COUNTER.idFromName(name)).inc());
        case "counter/get":
          return text(await env.COUNTER.get(env.COUNTER.idFromName(name)).get());
        case "kv/put": {
          const k = q.get("k");
          if (!k) return text("missing k", 400);
          await env.KV.get(env.KV.idFromName(name)).put(k, q.get("v") ?? "");
          return text("ok");
        }
        case "kv/get": {
          const k = q.get("k");
          if (!k) return text("missing k", 400);
          const f = await env.KV.get(env.KV.idFromName(name)).lookup(k);
          return f.ok ? text(f.value) : text("not found", 404);
        }
        case "rpc":
          return text(await env.NOTES.get(env.NOTES.idFromName(name)).add(q.get("note") ?? ""));
        case "ws":
          return env.ROOM.get(env.ROOM.idFromName(name)).fetch(request);
        default:
          return text("404 page not found", 404);
      }
    } catch (err) {
      return text(String(err), 500);
    }
  },
};
