// libFuzzer target: the image parser. Any bytes as snapshot.pb, against pages.img sizes of the
// manifest's own claim and of a few others; parse_manifest must refuse or accept without a
// sanitizer report, and what it accepts must satisfy the invariants the restorer relies on.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

#include <google/protobuf/stubs/logging.h>

#include "snapshot/image.h"

namespace {

void require(bool cond, const char* what) {
  if (cond) return;
  std::fprintf(stderr, "accepted image breaks an invariant: %s\n", what);
  std::abort();
}

// What check_structure promises to the restorer: sorted disjoint page-aligned mappings below
// 2^47, runs inside one stored mapping each, laid out back to back over all of pages.img.
void check_accepted(const prewarm::pb::Snapshot& snap, uint64_t pages_size) {
  uint64_t prev_end = 0;
  for (const auto& m : snap.mappings()) {
    require(m.start() < m.end() && m.start() % 4096 == 0 && m.end() % 4096 == 0, "mapping range");
    require(m.start() >= prev_end && m.end() <= (1ull << 47), "mapping order or bound");
    prev_end = m.end();
  }
  uint64_t off = 0, prev_run_end = 0;
  int mi = 0;
  for (const auto& r : snap.page_runs()) {
    require(r.file_offset() == off && r.len() <= pages_size - off, "run inside pages.img");
    require(r.len() > 0 && r.addr() >= prev_run_end, "runs sorted and disjoint");
    prev_run_end = r.addr() + r.len();
    while (mi < snap.mappings_size() && snap.mappings(mi).end() <= r.addr()) ++mi;
    require(mi < snap.mappings_size(), "run inside a mapping");
    const auto& m = snap.mappings(mi);
    require(m.start() <= r.addr() && r.len() <= m.end() - r.addr(), "run inside one mapping");
    require(m.kind() == prewarm::pb::Mapping::ANON || m.kind() == prewarm::pb::Mapping::FILE ||
                m.kind() == prewarm::pb::Mapping::SHARED_ANON,
            "run only in a stored kind of mapping");
    off += r.len();
  }
  require(off == pages_size, "pages.img fully accounted for");
}

}  // namespace

// protobuf logs every malformed string field to stderr: noise that slows the run and buries a
// real report.
extern "C" int LLVMFuzzerInitialize(int*, char***) {
  google::protobuf::SetLogHandler(nullptr);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  prewarm::pb::Snapshot claimed;
  uint64_t sizes[] = {0, 4096, 1ull << 20, ~0ull};
  if (claimed.ParseFromArray(data, static_cast<int>(size))) sizes[0] = claimed.pages_img_size();
  for (uint64_t pages_size : sizes)
    if (auto snap = prewarm::parse_manifest(bytes, pages_size)) {
      check_accepted(*snap, pages_size);
      if (std::getenv("FUZZ_REPORT_ACCEPTED")) std::fputs("accepted\n", stderr);  // see run_fuzzer.sh
    }
  return 0;
}
