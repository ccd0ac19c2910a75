// A node app for runtimes_test: start-up work (modules loaded, a table computed), an interval
// timer, stdin read through libuv (epoll), then one answer. `ticking` says the timer fired after
// the input came, so after a restore.
const crypto = require('crypto'), zlib = require('zlib');
const table = [];
for (let i = 0; i < 200000; i++) table.push(crypto.createHash('sha1').update(String(i)).digest('hex').slice(0, 4));
let ticks = 0;
const t = setInterval(() => ticks++, 5);
console.log(`ready pid=${process.pid}`);
let buf = '';
// Input closed without a line (the test gave up waiting): end, or the interval keeps it alive.
process.stdin.on('end', () => { if (buf.indexOf('\n') < 0) { console.log('no input'); process.exit(2); } });
process.stdin.on('data', (d) => {
  buf += d;
  const nl = buf.indexOf('\n');
  if (nl < 0) return;
  const n = parseInt(buf.slice(0, nl), 10);
  ticks = 0;
  setTimeout(() => {
    clearInterval(t);
    const z = zlib.gzipSync(Buffer.from(table.slice(0, n).join(''))).length;
    console.log(`answer=${table[n]} gz=${z > 0} ticking=${ticks > 0}`);
    process.exit(0);
  }, 30);
});
