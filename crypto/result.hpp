// outlast::result<T>: the return type of every fallible operation in Outlast.
// Holds either a value or an outlast::error (a code for programs, a message for people).
// Lives in the lowest layer so that every layer above shares one error type.
#pragma once

#include <cassert>
#include <string>
#include <utility>
#include <variant>

namespace outlast {

enum class errc {
  invalid_argument,  // the caller (a user, a file, a peer) gave something malformed
  not_found,
  already_exists,
  bad_signature,
  stale,             // an older or equal sequence number than what is held
  io_error,
  corrupt,           // data on disk or from a peer failed an integrity check
  wrong_passphrase,
  unavailable,       // a service (the node, the socket) is not there
  busy,              // a resource is held by someone else (a lock)
  internal,
};

struct error {
  errc code;
  std::string message;
};

inline error make_error(errc code, std::string message) { return error{code, std::move(message)}; }

template <class T>
class [[nodiscard]] result {
 public:
  result(T value) : m_v(std::in_place_index<0>, std::move(value)) {}
  result(error e) : m_v(std::in_place_index<1>, std::move(e)) {}

  bool ok() const { return m_v.index() == 0; }
  explicit operator bool() const { return ok(); }

  T& value() & { assert(ok()); return std::get<0>(m_v); }
  T const& value() const& { assert(ok()); return std::get<0>(m_v); }
  T&& value() && { assert(ok()); return std::get<0>(std::move(m_v)); }
  T& operator*() & { return value(); }
  T const& operator*() const& { return value(); }
  T&& operator*() && { return std::move(*this).value(); }
  T* operator->() { return &value(); }
  T const* operator->() const { return &value(); }

  error const& err() const { assert(!ok()); return std::get<1>(m_v); }

 private:
  std::variant<T, error> m_v;
};

template <>
class [[nodiscard]] result<void> {
 public:
  result() = default;
  result(error e) : m_err(std::move(e)), m_ok(false) {}
  bool ok() const { return m_ok; }
  explicit operator bool() const { return m_ok; }
  error const& err() const { assert(!m_ok); return m_err; }

 private:
  error m_err{errc::internal, {}};
  bool m_ok = true;
};

using status = result<void>;

}  // namespace outlast
