// An HTTP proxy for callrelay's tests: npm `proxy` (CONNECT tunnels) on
// 127.0.0.1, on an ephemeral port. With PROXY_USER/PROXY_PASSWORD set it
// demands Basic credentials (407 otherwise).
//
// Prints JSON lines on stdout: {"ev":"listening","port":N} once, then
// {"ev":"connect","target":"host:port","authorized":bool} for every CONNECT.
import * as http from 'node:http';
import { createProxy } from 'proxy';

const user = process.env.PROXY_USER;
const password = process.env.PROXY_PASSWORD;
const say = (line) => process.stdout.write(JSON.stringify(line) + '\n');

function authorized(req) {
  if (user === undefined) return true;
  const header = req.headers['proxy-authorization'] || '';
  const [scheme, token] = header.split(' ');
  if (scheme !== 'Basic' || !token) return false;
  return Buffer.from(token, 'base64').toString('utf8') === `${user}:${password}`;
}

const server = createProxy(http.createServer());
server.authenticate = (req) => authorized(req);
// Registered after the proxy's own listener: it only reports.
server.on('connect', (req) => say({ ev: 'connect', target: req.url, authorized: authorized(req) }));
server.listen(0, '127.0.0.1', () => say({ ev: 'listening', port: server.address().port }));
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
