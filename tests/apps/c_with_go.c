/* Loads the Go library argv[1] (go_lib.go) and waits for a line; then calls into it. */
#include <dlfcn.h>
#include <stdio.h>
#include <unistd.h>

int main(int argc, char** argv) {
  if (argc < 2) return 2;
  void* lib = dlopen(argv[1], RTLD_NOW);
  if (!lib) return fprintf(stderr, "%s\n", dlerror()), 1;
  int (*collect)(void) = (int (*)(void))dlsym(lib, "Collect");
  if (!collect) return 1;
  printf("ready pid=%d\n", getpid());
  fflush(stdout);
  char line[64];
  if (!fgets(line, sizeof line, stdin)) return 1;
  printf("answer=%d\n", collect());
  return 0;
}
