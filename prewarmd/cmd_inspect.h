// `prewarm inspect`: what is in an image.
#pragma once

#include <string>

namespace prewarm::cli {

int run_inspect(const std::string& images_dir, bool json);

}  // namespace prewarm::cli
