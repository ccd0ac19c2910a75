// Result<T>: a value or an error (negative errno + context), the project's way to return failures.
#pragma once

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <utility>
#include <variant>

namespace prewarm {

// "0x..." for messages.
inline std::string hex(uint64_t v) {
  char b[24];
  std::snprintf(b, sizeof b, "0x%llx", static_cast<unsigned long long>(v));
  return b;
}

struct Error {
  int code = EINVAL;  // positive errno
  std::string message;
  bool unsupported = false;  // not a failure: this launch cannot take the image (exit 3)

  // "what failed: strerror" — the message names the object, the caller adds what to do next.
  std::string describe() const {
    if (code == 0) return message;
    return message + ": " + std::strerror(code);
  }
};

inline Error make_error(int code, std::string message) { return Error{code, std::move(message)}; }
// For the common case right after a failed syscall.
inline Error errno_error(std::string message) { return Error{errno, std::move(message)}; }
// For failures that have no errno (bad data, policy): code is the category, message says it all.
inline Error data_error(std::string message) { return Error{0, std::move(message)}; }
// A restore this launch must refuse (it would run with state the launch does not give), by name.
inline Error unsupported_error(std::string message) { return Error{0, std::move(message), true}; }

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT: implicit by design
  Result(Error error) : v_(std::move(error)) {}  // NOLINT

  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }
  T& value() & { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  const T& value() const& { return std::get<0>(v_); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  const Error& error() const { return std::get<1>(v_); }

 private:
  std::variant<T, Error> v_;
};

template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Error error) : error_(std::move(error)), ok_(false) {}  // NOLINT
  bool ok() const { return ok_; }
  explicit operator bool() const { return ok_; }
  const Error& error() const { return error_; }

 private:
  Error error_;
  bool ok_ = true;
};

inline Result<void> ok() { return {}; }

}  // namespace prewarm

// Propagate an error from an expression of Result type; otherwise yield nothing.
#define PW_TRY(expr)                              \
  do {                                            \
    auto&& pw_try_r_ = (expr);                    \
    if (!pw_try_r_.ok()) return pw_try_r_.error(); \
  } while (0)

// Bind the value of a Result expression to `decl`, or propagate its error.
#define PW_CONCAT_INNER(a, b) a##b
#define PW_CONCAT(a, b) PW_CONCAT_INNER(a, b)
#define PW_ASSIGN(decl, expr) PW_ASSIGN_IMPL(PW_CONCAT(pw_assign_r_, __LINE__), decl, expr)
#define PW_ASSIGN_IMPL(tmp, decl, expr)    \
  auto tmp = (expr);                       \
  if (!tmp.ok()) return tmp.error();       \
  decl = std::move(tmp).value()
