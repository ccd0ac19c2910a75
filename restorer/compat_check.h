// Checks that an image can be restored on this machine, and opens every file it maps.
#pragma once

#include <sys/stat.h>

#include <map>
#include <string>

#include "snapshot/cpu_compat.h"
#include "snapshot/result.h"
#include "snapshot/snapshot.pb.h"
#include "snapshot/unique_fd.h"

namespace prewarm {

// Same kernel, same XSAVE layout, same vDSO text and layout: otherwise registers or libc's
// pointers into the vDSO would be wrong after restore. Returns this process's vDSO pair.
Result<SpecialMappings> check_machine_compat(const pb::Snapshot& snap);

// The image's vDSO pair against this process's (`own`): the same sizes, and the same distance
// from each data mapping to [vdso] (the vDSO code reaches its data at fixed offsets). Either side
// may lack [vvar_vclock] (before Linux 6.13), but only both together.
Result<void> check_vdso_layout(const pb::Snapshot& snap, const SpecialMappings& own);

struct OpenedFiles {
  std::map<std::string, UniqueFd> by_path;  // one fd per file, however many mappings it has
  UniqueFd exe;
};

// Opens the executable and every mapped file, refusing any that changed since the snapshot.
Result<OpenedFiles> open_mapped_files(const pb::Snapshot& snap);

}  // namespace prewarm
