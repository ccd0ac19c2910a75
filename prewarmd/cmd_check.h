// `prewarm check`: what this machine and user can do (like `criu check`), and what to do if not.
#pragma once

namespace prewarm::cli {

// Exit 0 when dump and restore can work here, 1 when something they need is missing.
int run_check(bool json);

}  // namespace prewarm::cli
