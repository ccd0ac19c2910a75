// Image-versus-machine checks, all done before the point of no return.
#include "restorer/compat_check.h"

#include <fcntl.h>
#include <sys/stat.h>

#include "snapshot/file_identity.h"

namespace prewarm {

Result<SpecialMappings> check_machine_compat(const pb::Snapshot& snap) {
  const auto& c = snap.compat();
  MachineCompat here = machine_compat();
  if (c.kernel_release() != here.kernel_release)
    return data_error("image was taken on kernel " + c.kernel_release() + ", this is " +
                      here.kernel_release);
  if (c.xfeatures() != here.xfeatures || c.xsave_size() != here.xsave_size ||
      snap.regs().xsave().size() != here.xsave_size)
    return data_error("image was taken on a CPU with a different XSAVE layout");
  PW_ASSIGN(SpecialMappings own, own_special_mappings());
  PW_TRY(check_vdso_layout(snap, own));
  if (hash128(reinterpret_cast<const void*>(own.vdso_start), own.vdso_end - own.vdso_start) !=
      c.vdso_hash())
    return data_error("the vDSO differs from the image's (contents)");
  return own;
}

Result<void> check_vdso_layout(const pb::Snapshot& snap, const SpecialMappings& own) {
  const auto& c = snap.compat();
  if (own.vdso_end - own.vdso_start != c.vdso_size() ||
      own.vvar_end - own.vvar_start != c.vvar_size() ||
      own.vvar_vclock_end - own.vvar_vclock_start != c.vvar_vclock_size())
    return data_error("the vDSO differs from the image's (sizes)");
  // The vDSO code reaches [vvar] at a fixed distance: the image must keep the kernel's layout.
  uint64_t vvar = 0, vclock = 0, vdso = 0;
  for (const auto& m : snap.mappings()) {
    if (m.kind() == pb::Mapping::VVAR) vvar = m.start();
    if (m.kind() == pb::Mapping::VVAR_VCLOCK) vclock = m.start();
    if (m.kind() == pb::Mapping::VDSO) vdso = m.start();
  }
  if (vdso == 0) return data_error("image has no [vdso] mapping");
  // A mapping the manifest has but its compat sizes deny (or the reverse) is a hostile image.
  if ((vvar != 0) != (c.vvar_size() != 0) || (vclock != 0) != (c.vvar_vclock_size() != 0))
    return data_error("image's vDSO mappings do not match its recorded sizes");
  if ((vvar && vdso - vvar != own.vdso_start - own.vvar_start) ||
      (vclock && vdso - vclock != own.vdso_start - own.vvar_vclock_start))
    return data_error("image's vDSO layout does not match this kernel's");
  return ok();
}

Result<OpenedFiles> open_mapped_files(const pb::Snapshot& snap) {
  OpenedFiles out;
  auto open_checked = [](const std::string& path, const pb::FileId& id, int flags)
      -> Result<UniqueFd> {
    auto fd = open_fd(path, flags);
    if (!fd) return make_error(fd.error().code, path + " cannot be opened");
    PW_ASSIGN(FileIdentity now, identity_of_fd(fd->get()));
    if (auto why = changed(from_proto(id), now))
      return data_error(path + " changed since the snapshot: " + std::string(*why));
    return fd;
  };
  PW_ASSIGN(out.exe, open_checked(snap.process().exe_path(), snap.process().exe(), O_RDONLY));
  for (const auto& m : snap.mappings()) {
    if (m.kind() != pb::Mapping::FILE) continue;
    int flags = (m.shared() && m.may_write()) ? O_RDWR : O_RDONLY;
    auto it = out.by_path.find(m.name());
    if (it != out.by_path.end()) {
      // Already open; reopen writable only if this mapping needs it and the first did not.
      if (flags == O_RDONLY || (::fcntl(it->second.get(), F_GETFL) & O_ACCMODE) == O_RDWR) continue;
    }
    PW_ASSIGN(UniqueFd fd, open_checked(m.name(), m.file(), flags));
    out.by_path[m.name()] = std::move(fd);
  }
  return out;
}

}  // namespace prewarm
