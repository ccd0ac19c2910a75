// A node app for runtimes_test that watches a directory (fs.watch: libuv's inotify instance on
// its epoll) from start-up. Its answer names the events of a file it makes there and removes.
const fs = require('fs');
const dir = process.argv[2];
const seen = [];
fs.watch(dir, (ev, name) => seen.push(`${ev}:${name}`));
console.log(`ready pid=${process.pid}`);
let buf = '';
process.stdin.on('end', () => { if (buf.indexOf('\n') < 0) { console.log('no input'); process.exit(2); } });
process.stdin.on('data', (d) => {
  buf += d;
  const nl = buf.indexOf('\n');
  if (nl < 0) return;
  const name = `f${parseInt(buf.slice(0, nl), 10)}`;
  fs.writeFileSync(`${dir}/${name}`, 'x');
  setTimeout(() => {
    fs.unlinkSync(`${dir}/${name}`);
    console.log(`answer=${seen.join(',')}`);
    process.exit(0);
  }, 200);
});
