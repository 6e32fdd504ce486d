// SPRecord stand-in for callrelay's tests: `GET /sys/events` served by a real
// SSE implementation (better-sse) on 127.0.0.1, plus a small control API the
// test drives. Prints `{"port": N}` on stdout once listening.
//
// With SPRECORD_PEER_TLS_CERT and SPRECORD_PEER_TLS_KEY (PEM file paths) the
// same routes are also served over HTTPS on a second port, announced as
// `{"port": N, "tls_port": M}`; the control API stays reachable on plain HTTP.
// PEER_PORT fixes the plain HTTP port (default 0: a random free port).
//
// Behaviour, like the vendor's documented limits:
// - at most LIMIT (3) concurrent /sys/events connections: a connection counts
//   from its request until its socket closes; one more is answered 429 with
//   "too many connections" and counted in `rejected_over_limit`. With
//   SPRECORD_PEER_LAZY_CLOSE=1 an accepted stream whose client closed it
//   keeps counting until the server next writes (a /control/send), as a
//   server that notices a vanished client only when a write to it fails;
// - `max_concurrent` is the highest number of such sockets ever open at once;
// - every event gets an id (its index in the history); a request carrying
//   Last-Event-ID is first sent the history after that id (real SSE resume);
// - keep-alive comments every KEEPALIVE ms on every stream that is not hung.
//
// Control API (JSON):
//   GET  /control/state
//   GET  /control/wait?open=N&total=N&refused=N&concurrent=N&timeout_ms=N
//                          (long-poll until all hold; 408 with the state on timeout)
//   POST /control/send     {events: [string|object], to?: "all"|[conn], multiline?: bool}
//                          (a string is sent verbatim as data, an object as JSON)
//   POST /control/drop     {conn}                 destroy that stream's socket
//   POST /control/hang     {conn}                 stop writing to it, keep it open
//   POST /control/fail     {status, count, body?, clear?} answer the next `count`
//                          requests so (`clear` first empties the queue)
//   POST /control/token    {token|null}           require `Authorization: Bearer token`
"use strict";

const fs = require("node:fs");
const http = require("node:http");
const https = require("node:https");
const { createSession } = require("better-sse");

const LIMIT = 3;
const KEEPALIVE = Number(process.env.SPRECORD_PEER_KEEPALIVE_MS || 100);
const LAZY_CLOSE = process.env.SPRECORD_PEER_LAZY_CLOSE === "1";
let deadSlots = 0; // closed streams still counted (LAZY_CLOSE)

const conns = new Map(); // conn id → {session, socket, hung}
const history = []; // {id, data}
let nextConn = 1;
let concurrent = 0;
let maxConcurrent = 0;
let totalAccepted = 0;
let rejectedOverLimit = 0;
let refused = 0; // answers other than 200 to /sys/events
const failQueue = []; // {status, body}
let token = null;
const lastEventIds = []; // Last-Event-ID of each accepted request ("" when none)
const requests = []; // {at_ms, status} of every /sys/events request, in arrival order
const started = Date.now();
const waiters = new Set();

function openConns() {
  return [...conns.entries()].filter(([, c]) => !c.hung).map(([id]) => id);
}

function state() {
  return {
    open: openConns(),
    hung: [...conns.entries()].filter(([, c]) => c.hung).map(([id]) => id),
    concurrent,
    max_concurrent: maxConcurrent,
    total_accepted: totalAccepted,
    rejected_over_limit: rejectedOverLimit,
    dead_slots: deadSlots,
    refused,
    history: history.length,
    last_event_ids: lastEventIds,
    requests,
  };
}

function wake() {
  for (const w of [...waiters]) w();
}

function json(res, status, body) {
  res.writeHead(status, { "content-type": "application/json" });
  res.end(JSON.stringify(body));
}

function readJson(req) {
  return new Promise((resolve, reject) => {
    let text = "";
    req.setEncoding("utf8");
    req.on("data", (c) => (text += c));
    req.on("end", () => {
      try {
        resolve(text ? JSON.parse(text) : {});
      } catch (e) {
        reject(e);
      }
    });
  });
}

// Writes events (each line of `data` its own `data:` field: multi-line data)
// or a keep-alive comment through better-sse's EventBuffer.
function write(conn, fill) {
  const c = conns.get(conn);
  if (!c || c.hung) return Promise.resolve(false);
  return c.session.batch(fill).then(
    () => true,
    () => false,
  );
}

function eventsInto(evs) {
  return (buf) => {
    for (const ev of evs) {
      for (const line of ev.data.split("\n")) buf.writeField("data", line);
      buf.id(ev.id).dispatch();
    }
  };
}

function targets(to) {
  if (to === undefined || to === "all") return openConns();
  return to.filter((id) => conns.has(id) && !conns.get(id).hung);
}

async function events(req, res) {
  const socket = req.socket;
  if (!socket.__sse) {
    socket.__sse = true;
    concurrent += 1;
    maxConcurrent = Math.max(maxConcurrent, concurrent);
    socket.on("close", () => {
      if (LAZY_CLOSE && socket.__stream) deadSlots += 1;
      else concurrent -= 1;
      wake();
    });
  }
  const answered = (status) => requests.push({ at_ms: Date.now() - started, status });
  if (concurrent > LIMIT) {
    answered(429);
    rejectedOverLimit += 1;
    refused += 1;
    res.writeHead(429, { "content-type": "text/plain" });
    res.end("too many connections");
    wake();
    return;
  }
  const failure = failQueue.shift();
  if (failure) {
    answered(failure.status);
    refused += 1;
    res.writeHead(failure.status, { "content-type": "text/plain", connection: "close" });
    res.end(failure.body || http.STATUS_CODES[failure.status] || "error");
    wake();
    return;
  }
  if (token !== null && req.headers.authorization !== "Bearer " + token) {
    answered(401);
    refused += 1;
    res.writeHead(401, { "content-type": "text/plain", connection: "close" });
    res.end("unauthorized");
    wake();
    return;
  }
  answered(200);
  socket.__stream = true;
  const lastId = req.headers["last-event-id"] || "";
  const session = await createSession(req, res, { keepAlive: null });
  const id = nextConn++;
  const conn = { session, socket, hung: false };
  conns.set(id, conn);
  totalAccepted += 1;
  lastEventIds.push(lastId);
  session.on("disconnected", () => {
    conns.delete(id);
    wake();
  });
  // Resume: the history after the client's last id.
  const after = Number(lastId);
  if (lastId !== "" && Number.isInteger(after)) {
    const missed = history.slice(after);
    if (missed.length) await write(id, eventsInto(missed));
  }
  wake();
}

async function control(req, res, url) {
  const path = url.pathname;
  if (req.method === "GET" && path === "/control/state") return json(res, 200, state());
  if (req.method === "GET" && path === "/control/wait") {
    const want = (k) => (url.searchParams.has(k) ? Number(url.searchParams.get(k)) : null);
    const open = want("open");
    const total = want("total");
    const refusedAtLeast = want("refused");
    const conc = want("concurrent");
    const timeout = want("timeout_ms") ?? 10000;
    const done = () =>
      (open === null || openConns().length === open) &&
      (total === null || totalAccepted >= total) &&
      (refusedAtLeast === null || refused >= refusedAtLeast) &&
      (conc === null || concurrent === conc);
    if (done()) return json(res, 200, state());
    let timer;
    const waiter = () => {
      if (!done()) return;
      waiters.delete(waiter);
      clearTimeout(timer);
      json(res, 200, state());
    };
    timer = setTimeout(() => {
      waiters.delete(waiter);
      json(res, 408, state());
    }, timeout);
    waiters.add(waiter);
    return;
  }
  if (req.method !== "POST") return json(res, 405, { error: "method" });
  const body = await readJson(req);
  switch (path) {
    case "/control/send": {
      // Writing finds the streams whose clients went away (LAZY_CLOSE).
      concurrent -= deadSlots;
      deadSlots = 0;
      const to = targets(body.to);
      // A string is sent verbatim (malformed data is a string); an object as JSON.
      const evs = (body.events || []).map((e) => {
        const data =
          typeof e === "string" ? e : JSON.stringify(e, null, body.multiline ? 2 : undefined);
        const ev = { id: String(history.length + 1), data };
        history.push(ev);
        return ev;
      });
      await Promise.all(to.map((c) => write(c, eventsInto(evs))));
      return json(res, 200, { sent_to: to, history: history.length });
    }
    case "/control/drop": {
      const c = conns.get(body.conn);
      if (c) c.socket.destroy();
      return json(res, 200, { dropped: !!c });
    }
    case "/control/hang": {
      const c = conns.get(body.conn);
      if (c) c.hung = true;
      wake();
      return json(res, 200, { hung: !!c });
    }
    case "/control/fail": {
      if (body.clear) failQueue.length = 0;
      for (let i = 0; i < (body.count ?? 1); i++) failQueue.push({ status: body.status, body: body.body });
      return json(res, 200, { queued: failQueue.length });
    }
    case "/control/token": {
      token = body.token ?? null;
      return json(res, 200, { token: token !== null });
    }
    default:
      return json(res, 404, { error: "no such control" });
  }
}

function route(req, res) {
  const url = new URL(req.url, "http://127.0.0.1");
  const handler =
    url.pathname === "/sys/events" && req.method === "GET"
      ? events(req, res)
      : url.pathname.startsWith("/control/")
        ? control(req, res, url)
        : Promise.resolve(json(res, 404, { error: "not found" }));
  handler.catch((e) => {
    if (!res.headersSent) json(res, 500, { error: String(e) });
  });
}

setInterval(() => {
  for (const id of openConns()) write(id, (buf) => buf.comment("keep-alive").dispatch());
}, KEEPALIVE).unref();

function listen(server, port = 0) {
  return new Promise((resolve) => server.listen(port, "127.0.0.1", () => resolve(server.address().port)));
}

async function main() {
  const announced = { port: await listen(http.createServer(route), Number(process.env.PEER_PORT || 0)) };
  const cert = process.env.SPRECORD_PEER_TLS_CERT;
  const key = process.env.SPRECORD_PEER_TLS_KEY;
  if (cert && key) {
    const tls = { cert: fs.readFileSync(cert), key: fs.readFileSync(key) };
    announced.tls_port = await listen(https.createServer(tls, route));
  }
  process.stdout.write(JSON.stringify(announced) + "\n");
}
main();

// The test owns this process: exit when it closes our stdin.
process.stdin.on("end", () => process.exit(0));
process.stdin.resume();
