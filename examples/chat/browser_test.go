package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// findChromium returns the path of a Chromium or Chrome binary, or "".
func findChromium() string {
	if p := os.Getenv("DURABLE_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// artifactDir is where the test leaves screenshots: $DURABLE_ARTIFACTS, or
// durable-artifacts in the system's temporary folder.
func artifactDir(t *testing.T) string {
	dir := os.Getenv("DURABLE_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "durable-artifacts")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestChat_Browser drives the real page in headless Chromium: two pages
// join a room and talk, the room hibernates and they keep talking, the
// server restarts and the pages reconnect to find the history intact.
func TestChat_Browser(t *testing.T) {
	exe := findChromium()
	if exe == "" {
		if os.Getenv("DURABLE_REQUIRE_BROWSER") == "1" {
			t.Fatal("chromium not found and DURABLE_REQUIRE_BROWSER=1 (apt-get install -y chromium)")
		}
		t.Skip("chromium not found: install it (apt-get install -y chromium) or set DURABLE_CHROMIUM; " +
			"set DURABLE_REQUIRE_BROWSER=1 to make this a failure")
	}
	dir := t.TempDir()
	a, addr, stop := startApp(t, dir, "", nil)
	base := "http://" + addr + "/"

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(ctx,
		chromedp.ExecPath(exe),
		chromedp.Flag("headless", true),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1100, 760),
	)
	defer cancelAlloc()
	pageA, cancelA := chromedp.NewContext(allocCtx, chromedp.WithLogf(t.Logf))
	defer cancelA()
	if err := chromedp.Do(pageA); err != nil { // starts the browser
		t.Fatalf("start chromium: %v", err)
	}
	pageB, cancelB := chromedp.NewContext(pageA) // a second tab of the same browser
	defer cancelB()

	run := func(page context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(page, steps...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	// waitJS polls a JavaScript condition on page.
	waitJS := func(page context.Context, what, js string) {
		t.Helper()
		run(page, what, chromedp.Poll[chromedp.Void](js, chromedp.WithPollingTimeout(20*time.Second)))
	}
	has := func(sel, text string) string {
		return fmt.Sprintf("document.querySelector(%q).innerText.includes(%q)", sel, text)
	}
	join := func(page context.Context, nick string) {
		t.Helper()
		run(page, "join as "+nick,
			chromedp.Navigate(base),
			chromedp.WaitVisible(chromedp.ID("join")),
			chromedp.SetValue(chromedp.ID("room"), "lobby"),
			chromedp.SendKeys(chromedp.ID("nick"), nick),
			chromedp.Click(chromedp.ID("join-button")),
			chromedp.WaitVisible(chromedp.ID("chat")),
		)
		waitJS(page, nick+" connected", has("#status", "connected as "+nick))
	}
	say := func(page context.Context, text string) {
		t.Helper()
		run(page, "say "+text,
			chromedp.SendKeys(chromedp.ID("text"), text),
			chromedp.Click(chromedp.ID("send")),
		)
	}
	screenshot := func(page context.Context, name string) {
		t.Helper()
		png, err := chromedp.Run(page, chromedp.CaptureScreenshot())
		if err != nil {
			t.Fatalf("screenshot: %v", err)
		}
		path := filepath.Join(artifactDir(t), name)
		if err := os.WriteFile(path, png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot: %s", path)
	}

	join(pageA, "alice")
	join(pageB, "bob")
	waitJS(pageA, "alice sees bob", has("#members", "bob"))
	say(pageA, "hello from alice")
	waitJS(pageB, "bob gets alice's message", has("#messages", "hello from alice"))

	// The room hibernates while both pages stay connected.
	hibernate(t, a)
	say(pageB, "bob here, the room was hibernating")
	waitJS(pageA, "alice gets bob's message after hibernation", has("#messages", "the room was hibernating"))
	screenshot(pageA, "chat-alice.png")

	// Restart the server on the same port and data: the pages reconnect
	// and get the history from the room's database.
	stop()
	waitJS(pageA, "alice sees the disconnect", has("#status", "disconnected"))
	_, _, _ = startApp(t, dir, addr, nil)
	for _, p := range []struct {
		page context.Context
		nick string
	}{{pageA, "alice"}, {pageB, "bob"}} {
		waitJS(p.page, p.nick+" reconnects", has("#status", "connected as "+p.nick))
		waitJS(p.page, p.nick+" sees the history", has("#messages", "hello from alice")+" && "+has("#messages", "the room was hibernating"))
	}
	say(pageA, "back after the restart")
	waitJS(pageB, "bob gets the message after the restart", has("#messages", "back after the restart"))
	members, err := chromedp.Run(pageB, chromedp.Text(chromedp.ID("members")))
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Fields(members)
	slices.Sort(got) // after the restart they reconnect in any order
	if strings.Join(got, ",") != "alice,bob" {
		t.Errorf("members = %q", members)
	}
	screenshot(pageB, "chat-bob.png")
	cancelB()
	cancelA()
	if err := chromedp.Cancel(pageA); err != nil && err != context.Canceled {
		t.Logf("closing the browser: %v", err)
	}
}
