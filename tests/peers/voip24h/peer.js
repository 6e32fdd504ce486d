// A scripted stand-in for the Voip24h realtime server, built on the real
// socket.io server packages (2.x speaks Engine.IO 3, 4.x speaks Engine.IO 4).
//
// Usage: node peer.js --sio 2|4 --key KEY [--secret S] [--say-ms N] [--hello-timeout-ms N]
//                     [--say-on-hello 1]   (also answer every `hello` with a `say` at once)
//                     [--raw-on-sign TEXT] (send TEXT as a raw socket.io packet on the first
//                                           accepted `sign`, before `signing`/`connected`)
//                     [--write-on-leave TEXT] (send TEXT as a raw socket.io packet when a
//                                           client disconnects the namespace (`41`): an
//                                           event the server sent just before it read that)
//                     [--burst-on-leave N] (send N more call events, as `stream` does, when
//                                           a client disconnects the namespace: more than
//                                           the relay can journal in its 3 s drain)
//                     [--tls-cert PEM --tls-key PEM]   (serve https/wss instead of http/ws)
//                     [--port N]  (listen on port N; default 0: a random free port)
//                     [--ping-ms N --ping-timeout-ms N]  (Engine.IO heartbeat; reported as
//                                           `heartbeat` with the client's packet type)
//                     [--namespace hold|refuse]  (a middleware that never opens the
//                                           default namespace, or refuses it)
//                     [--refuse-with event|connect-error]  (a wrong key gets an `error`
//                                           event, as the vendor documents, or a
//                                           CONNECT_ERROR `44`: socket.io 2's
//                                           `socket.error(msg)`, the way a stock 2.x
//                                           server refuses a client from a handler)
//
// It checks the key sent with `sign` (a string, or {voip, secret}), answers
// with `signing` then `connected` + `connection`, sends `say` every --say-ms to
// signed sessions, drops sessions that send no `hello` for --hello-timeout-ms,
// and counts concurrent connections and signed sessions per key.
//
// Control: one JSON command per stdin line. Reports: one JSON object per stdout
// line ({"ev": ...}); the test awaits these instead of sleeping.
//   {"cmd":"emit","event":"response","args":[...]}  emit to every signed session
//   {"cmd":"burst","event":"response","args_list":[[...],...]}  emit each, back to back,
//                        to every signed session; `disconnect` then reports `sent`,
//                        how many events that session was sent before it went
//   {"cmd":"burst","events":[["name",[...]],...]}  the same with each event's own name
//   {"cmd":"raw","text":"2[..."}  send TEXT as a raw socket.io packet (the Engine.IO
//                        message's data, unchecked) to every signed session
//   {"cmd":"socket_error","text":"msg","then":[["name",[...]],...]}  socket.io 2's
//                        `socket.error(msg)` (a `44` that leaves the connection open;
//                        4.x: the same packet written by hand) to every signed session,
//                        then each event of `then` right behind it
//   {"cmd":"drop","how":"close"|"destroy"|"disconnect"}  end every connection
//   {"cmd":"stream","every_ms":N,"per_tick":K}  emit K call events every N ms to every
//                        signed session until {"cmd":"stream_stop"}
//   {"cmd":"silence"}    stop saying `say` (connections stay open, hellos are ignored)
//   {"cmd":"restart","down_ms":N}  close the server, listen again on the same port
//   {"cmd":"stats"}      report counters
'use strict';

const fs = require('fs');
const http = require('http');
const https = require('https');
const readline = require('readline');

// --help prints the usage above and starts nothing (it started a server on a
// random port before).
if (process.argv.includes('--help') || process.argv.includes('-h')) {
  const header = fs.readFileSync(__filename, 'utf8').split('\n');
  const end = header.findIndex((line) => !line.startsWith('//'));
  process.stdout.write(header.slice(0, end).map((line) => line.replace(/^\/\/ ?/, '')).join('\n') + '\n');
  process.exit(0);
}

const args = {};
for (let i = 2; i < process.argv.length; i += 2) {
  args[process.argv[i].replace(/^--/, '')] = process.argv[i + 1];
}
const sioVersion = args.sio === '2' ? 2 : 4;
const KEY = args.key || 'test-key';
const SECRET = args.secret || '';
const SAY_MS = Number(args['say-ms'] || 500);
const HELLO_TIMEOUT_MS = Number(args['hello-timeout-ms'] || 5000);
// A server that asks again as soon as it is answered: a client answering
// every `say` at once would loop as fast as the socket goes.
const SAY_ON_HELLO = args['say-on-hello'] === '1';
const RAW_ON_SIGN = args['raw-on-sign'] || '';
const WRITE_ON_LEAVE = args['write-on-leave'] || '';
const BURST_ON_LEAVE = Number(args['burst-on-leave'] || 0);
// Engine.IO heartbeat: long by default, so that a silent session is found by the
// client's own watchdog, not by the server's heartbeat.
const PING_MS = Number(args['ping-ms'] || 25000);
const PING_TIMEOUT_MS = Number(args['ping-timeout-ms'] || 20000);
const NAMESPACE = args.namespace || 'open';
const REFUSE_WITH = args['refuse-with'] || 'event';
let streaming = null;
let streamed = 0;

function report(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

const stats = {
  connections: 0, // ever opened
  concurrent: 0,
  max_concurrent: 0,
  signed: 0, // sign accepted
  signed_now: {}, // key -> signed sessions open now
  max_signed_per_key: 0,
  refused: 0,
  hellos: 0,
};

const sockets = new Set();
let silenced = false;
let port = Number(args.port || 0);
let server = null;
let io = null;

function rawSocket(socket) {
  // The TCP socket under the websocket transport (engine.io 3 and 6 both keep
  // the `ws` WebSocket at transport.socket, and ws keeps the net.Socket at _socket).
  const t = socket.conn && socket.conn.transport;
  return t && t.socket && t.socket._socket;
}

// Sends an event as a raw packet: socket.io 2 silently keeps `error` (and
// both versions keep `disconnect`) local when passed to emit(), but the Voip24h
// server sends them to the client, so the stand-in must too.
function send(socket, event, args) {
  socket.packet({ type: 2, data: [event].concat(args || []) });
}

function onConnection(socket) {
  stats.connections += 1;
  stats.concurrent += 1;
  stats.max_concurrent = Math.max(stats.max_concurrent, stats.concurrent);
  sockets.add(socket);
  const state = { key: null, lastHello: Date.now(), sent: 0 };
  socket._peer = state;
  report({ ev: 'connect', n: stats.connections, concurrent: stats.concurrent, eio: socket.conn.protocol || 3 });
  // The client's side of the Engine.IO heartbeat: `ping` (Engine.IO 3) or
  // `pong` (Engine.IO 4, answering the server's ping).
  socket.conn.on('packet', (packet) => {
    if (packet.type === 'ping' || packet.type === 'pong') report({ ev: 'heartbeat', type: packet.type });
  });

  socket.on('sign', (arg) => {
    let key = null;
    let secretOk = true;
    if (typeof arg === 'string') key = arg;
    else if (arg && typeof arg === 'object') {
      key = arg.voip;
      secretOk = SECRET === '' || arg.secret === SECRET;
    }
    if (key !== KEY || !secretOk || state.key) {
      stats.refused += 1;
      report({ ev: 'refused', form: typeof arg });
      if (REFUSE_WITH === 'connect-error') {
        // socket.io 2: socket.error(msg) sends `44"msg"`; 4.x has no such
        // call, so the packet is written as 4.x would (`44{"message"}`).
        if (typeof socket.error === 'function') socket.error('invalid key');
        else socket.packet({ type: 4, data: { message: 'invalid key' } });
      } else {
        send(socket, 'error', ['invalid key']);
      }
      return;
    }
    state.key = key;
    state.lastHello = Date.now();
    stats.signed += 1;
    stats.signed_now[key] = (stats.signed_now[key] || 0) + 1;
    stats.max_signed_per_key = Math.max(stats.max_signed_per_key, stats.signed_now[key]);
    // engine.io's write() sends an Engine.IO message with this data as is: a
    // broken socket.io packet that the socket.io encoder would never produce.
    if (RAW_ON_SIGN && stats.signed === 1) socket.conn.write(RAW_ON_SIGN);
    send(socket, 'signing');
    send(socket, 'connected', ['ok']);
    send(socket, 'connection', ['ok']);
    report({ ev: 'signed', n: stats.signed, form: typeof arg, signed_now: stats.signed_now[key] });
  });

  socket.on('hello', () => {
    state.lastHello = Date.now();
    stats.hellos += 1;
    // at_ms: when the hello arrived here, for spacing checks free of the
    // report pipe's latency.
    report({ ev: 'hello', n: stats.hellos, at_ms: performance.now() });
    if (SAY_ON_HELLO && state.key) send(socket, 'say');
  });

  socket.on('disconnect', (reason) => {
    // The connection itself is still open after the namespace's disconnect.
    if (reason === 'client namespace disconnect') {
      if (WRITE_ON_LEAVE) socket.conn.write(WRITE_ON_LEAVE);
      for (let i = 0; i < BURST_ON_LEAVE; i++) {
        streamed += 1;
        const event = { extend: 130, state: 'Ring', phone: '0832666859', callid: `stream.${streamed}`, type: 'inbound' };
        socket.conn.write('2' + JSON.stringify(['response', event]));
        state.sent += 1;
      }
    }
    sockets.delete(socket);
    stats.concurrent -= 1;
    if (state.key) stats.signed_now[state.key] -= 1;
    report({ ev: 'disconnect', reason: String(reason), concurrent: stats.concurrent, sent: state.sent });
  });
}

// Keep-alive: `say` to signed sessions; drop those that stopped saying hello.
setInterval(() => {
  if (silenced) return;
  const now = Date.now();
  for (const socket of sockets) {
    const st = socket._peer;
    if (!st.key) continue;
    if (now - st.lastHello > HELLO_TIMEOUT_MS) {
      report({ ev: 'hello_timeout' });
      socket.disconnect(true);
      continue;
    }
    send(socket, 'say');
  }
}, SAY_MS);

function start(cb) {
  server = args['tls-cert']
    ? https.createServer({ cert: fs.readFileSync(args['tls-cert']), key: fs.readFileSync(args['tls-key']) })
    : http.createServer();
  if (sioVersion === 2) {
    const sio = require('sio2');
    io = sio(server, { transports: ['websocket'], pingInterval: PING_MS, pingTimeout: PING_TIMEOUT_MS });
  } else {
    const { Server } = require('sio4');
    io = new Server(server, { transports: ['websocket'], pingInterval: PING_MS, pingTimeout: PING_TIMEOUT_MS });
  }
  // --namespace hold: a middleware that never lets the namespace open;
  // --namespace refuse: one that refuses it (CONNECT_ERROR "nope").
  if (NAMESPACE === 'hold') io.use(() => {});
  if (NAMESPACE === 'refuse') io.use((socket, next) => next(new Error('nope')));
  io.on('connection', onConnection);
  server.listen(port, '127.0.0.1', () => {
    port = server.address().port;
    cb();
  });
}

function closeAll(how) {
  for (const socket of Array.from(sockets)) {
    if (how === 'destroy') {
      const raw = rawSocket(socket);
      if (raw) raw.destroy();
      else socket.conn.close();
    } else if (how === 'disconnect') {
      socket.disconnect(true);
    } else {
      socket.conn.close();
    }
  }
}

function handle(cmd) {
  switch (cmd.cmd) {
    case 'emit': {
      let n = 0;
      for (const socket of sockets) {
        if (!socket._peer.key) continue;
        send(socket, cmd.event, cmd.args);
        socket._peer.sent += 1;
        n += 1;
      }
      report({ ev: 'emitted', event: cmd.event, to: n });
      break;
    }
    case 'burst': {
      const events = cmd.events || cmd.args_list.map((a) => [cmd.event, a]);
      let n = 0;
      for (const socket of sockets) {
        if (!socket._peer.key) continue;
        for (const [event, a] of events) {
          send(socket, event, a);
          socket._peer.sent += 1;
        }
        n += 1;
      }
      report({ ev: 'burst_sent', event: cmd.event, to: n, count: events.length });
      break;
    }
    case 'raw': {
      let n = 0;
      for (const socket of sockets) {
        if (!socket._peer.key) continue;
        socket.conn.write(cmd.text);
        n += 1;
      }
      report({ ev: 'raw_sent', to: n });
      break;
    }
    case 'socket_error': {
      let n = 0;
      for (const socket of sockets) {
        if (!socket._peer.key) continue;
        if (typeof socket.error === 'function') socket.error(cmd.text);
        else socket.packet({ type: 4, data: { message: cmd.text } });
        for (const [event, a] of cmd.then || []) {
          send(socket, event, a);
          socket._peer.sent += 1;
        }
        n += 1;
      }
      report({ ev: 'socket_error_sent', to: n });
      break;
    }
    case 'drop':
      closeAll(cmd.how || 'close');
      report({ ev: 'dropped' });
      break;
    case 'stream': {
      // A server that keeps sending: `per_tick` call events every `every_ms`,
      // to every signed session, until `stream_stop`.
      clearInterval(streaming);
      streaming = setInterval(() => {
        for (const socket of sockets) {
          if (!socket._peer.key) continue;
          for (let i = 0; i < cmd.per_tick; i++) {
            streamed += 1;
            send(socket, 'response', [{ extend: 130, state: 'Ring', phone: '0832666859', callid: `stream.${streamed}`, type: 'inbound' }]);
            socket._peer.sent += 1;
          }
        }
      }, cmd.every_ms);
      report({ ev: 'streaming' });
      break;
    }
    case 'stream_stop':
      clearInterval(streaming);
      report({ ev: 'stream_stopped', streamed });
      break;
    case 'silence':
      silenced = true;
      report({ ev: 'silenced', sockets: sockets.size });
      break;
    case 'unsilence':
      silenced = false;
      report({ ev: 'unsilenced' });
      break;
    case 'restart':
      closeAll('destroy');
      io.close();
      try {
        server.close(() => {});
      } catch (e) {
        // already closed by io.close()
      }
      setTimeout(() => start(() => report({ ev: 'restarted', port })), cmd.down_ms || 0);
      break;
    case 'stats':
      report(Object.assign({ ev: 'stats' }, stats));
      break;
    default:
      report({ ev: 'unknown_command', cmd: cmd.cmd });
  }
}

readline.createInterface({ input: process.stdin }).on('line', (line) => {
  if (!line.trim()) return;
  let cmd;
  try {
    cmd = JSON.parse(line);
  } catch (e) {
    report({ ev: 'bad_command', error: String(e) });
    return;
  }
  handle(cmd);
});
process.stdin.on('end', () => process.exit(0));

start(() => report({ ev: 'listening', port, sio: sioVersion }));
