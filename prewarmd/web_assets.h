// The dashboard's pages, scripts and styles, compiled into prewarmd so it serves them without files.
#pragma once

#include <string_view>

namespace prewarm {

struct WebAsset {
  std::string_view path;  // "/static/NAME" as served, or "page:index" / "page:app" for the pages
  std::string_view content_type;
  std::string_view body;
};

// nullptr when there is no such asset.
const WebAsset* find_web_asset(std::string_view path);

}  // namespace prewarm
