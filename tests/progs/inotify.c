/* inotify round trip (zdtm inotify00): DIR/sub, which holds DIR/sub/old and where the program
 * made a file it holds open and has unlinked (a ghost file the restore makes again there, and
 * whose events the app must not hear), watched for creations, deletions and its entries' writes
 * (wd 1); DIR watched and the watch removed again (wd 2, its IN_IGNORED read); DIR/file watched
 * once for a write (wd 3, IN_ONESHOT); nonblocking. After restore the program makes the events
 * and reports them: each under its wd, the oneshot watch ended by IN_IGNORED, the next watch
 * given wd 4, nothing more.
 * "queued": an event is left unread at the snapshot; "open": DIR/file is also watched for opens
 * (both refused by name). */
#include <fcntl.h>
#include <sys/inotify.h>
#include <sys/stat.h>

#include "prog.h"

static void drain(int in) {
  char buf[4096];
  while (read(in, buf, sizeof buf) > 0) {
  }
}

int main(int argc, char** argv) {
  if (argc < 2) return 2;
  const char* mode = argc > 2 ? argv[2] : "";
  char sub[2048], file[2048], ghost[2048], made[4096];
  snprintf(sub, sizeof sub, "%s/sub", argv[1]);
  snprintf(file, sizeof file, "%s/file", argv[1]);
  snprintf(ghost, sizeof ghost, "%s/sub/ghost", argv[1]);
  if (mkdir(sub, 0700) != 0) return 1;
  snprintf(made, sizeof made, "%s/sub/old", argv[1]);
  close(open(made, O_CREAT | O_WRONLY, 0600));
  snprintf(made, sizeof made, "%s/sub/new", argv[1]);
  int w = open(file, O_CREAT | O_WRONLY, 0600);
  if (w < 0) return 1;
  close(w);
  int g = open(ghost, O_CREAT | O_RDWR, 0600);
  if (g < 0 || write(g, "g", 1) != 1 || unlink(ghost) != 0) return 1;
  int in = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (in < 0) return 1;
  int a = inotify_add_watch(in, sub, IN_CREATE | IN_DELETE | IN_MODIFY);
  int t = inotify_add_watch(in, argv[1], IN_ALL_EVENTS);
  inotify_rm_watch(in, t);
  drain(in);
  int b = inotify_add_watch(in, file, IN_MODIFY | IN_ONESHOT | (strcmp(mode, "open") == 0 ? IN_OPEN : 0));
  if (strcmp(mode, "queued") == 0) close(open(made, O_CREAT | O_WRONLY, 0600));
  say("ready pid=%d wds=%d,%d,%d", getpid(), a, t, b);
  char line[64];
  read_line(line, sizeof line);

  close(open(made, O_CREAT | O_WRONLY, 0600));
  w = open(file, O_WRONLY);
  CHECK(w >= 0 && write(w, "x", 1) == 1 && write(w, "y", 1) == 1);
  close(w);
  char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
  char events[512] = "";
  ssize_t n = read(in, buf, sizeof buf);
  for (ssize_t at = 0; at < n;) {
    const struct inotify_event* ev = (const struct inotify_event*)(buf + at);
    char one[128];
    snprintf(one, sizeof one, "%s%d:%s%s%s", events[0] ? "," : "", ev->wd,
             ev->mask & IN_CREATE ? "create" : ev->mask & IN_MODIFY ? "modify" : ev->mask & IN_IGNORED ? "ignored" : "other",
             ev->len ? ":" : "", ev->len ? ev->name : "");
    strncat(events, one, sizeof events - strlen(events) - 1);
    at += (ssize_t)(sizeof *ev + ev->len);
  }
  int next = inotify_add_watch(in, argv[1], IN_DELETE);
  int empty = read(in, buf, sizeof buf) < 0 && errno == EAGAIN;
  char got = 0;
  CHECK(pread(g, &got, 1, 0) == 1 && got == 'g');
  say("events=%s next_wd=%d empty=%d nonblock=%d", events, next, empty, (fcntl(in, F_GETFL) & O_NONBLOCK) != 0);
  return 0;
}
