// holders.mjs URL: the idle and slow clients of attack.mjs's idle case, in a process of
// their own, so that the process timing /health is not the one juggling 2,200 sockets
// (their timers and reads would stall its event loop and be counted as the server's).
// Opens 2,000 idle connections from 32 source addresses (63 each, under --per-client 64)
// and 200 slow-header clients from 4 more (50 each) that send one byte of a request
// every 200 ms; prints "ready" once all are connected and runs until its stdin closes.
import net from 'node:net';

const url = new URL(process.argv[2]);

function connect(localAddress) {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: url.hostname, port: +url.port, localAddress });
    s.on('connect', () => resolve(s));
    s.on('error', reject);
  });
}

const socks = [];
for (let a = 0; a < 32; a++)
  for (let i = 0; i < 63 && socks.length < 2000; i++) socks.push(await connect(`127.0.${1 + a}.2`));
const slow = [];
for (let a = 0; a < 4; a++)
  for (let i = 0; i < 50; i++) slow.push(await connect(`127.0.100.${2 + a}`));
for (const s of [...socks, ...slow]) s.on('error', () => {});
const head = 'POST /v1/completions HTTP/1.1\r\nHost: localhost\r\nX-Slow: ';
let k = 0;
const drip = setInterval(() => { for (const s of slow) s.write(head[k % head.length]); k++; }, 200);
let closed = 0;
for (const s of [...socks, ...slow]) s.on('close', () => { closed++; });
console.log('ready');
process.stdin.resume();
process.stdin.on('end', () => {
  clearInterval(drip);
  console.log(`closed by the server: ${closed}`);
  for (const s of [...socks, ...slow]) s.destroy();
  process.exit(0);
});
