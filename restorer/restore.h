// `prewarm restore`: turn the calling process into the snapshotted one.
#pragma once

#include <string>

#include "snapshot/result.h"

namespace prewarm {

// Validates and stages everything, then hands over to the restorer blob. Returns only on a
// failure before the point of no return; the process is then unchanged except for memory.
Error restore_in_place(const std::string& images_dir);

}  // namespace prewarm
