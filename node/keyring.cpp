#include "node/keyring.hpp"

#include <sys/stat.h>

#include <algorithm>
#include <cctype>

namespace outlast::node {

namespace fs = std::filesystem;

status keyring::check_name(std::string_view name) {
  if (name.empty() || name.size() > 64)
    return make_error(errc::invalid_argument, "a key name is 1 to 64 characters");
  if (name.front() == '.') return make_error(errc::invalid_argument, "a key name cannot start with '.'");
  for (char c : name)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == '-'))
      return make_error(errc::invalid_argument, "key name '" + std::string(name) + "': use only letters, digits, '_', '.' and '-'");
  return {};
}

status keyring::ensure_dir() const {
  std::error_code ec;
  fs::create_directories(m_dir, ec);
  if (ec) return make_error(errc::io_error, "cannot create " + m_dir.string() + ": " + ec.message());
  ::chmod(m_dir.c_str(), 0700);
  return {};
}

result<key_entry> keyring::create(std::string_view name, std::optional<std::string_view> passphrase, crypto::kdf_limits limits) {
  if (auto ok = check_name(name); !ok) return ok.err();
  if (auto ok = ensure_dir(); !ok) return ok.err();
  auto kp = crypto::key_pair::generate();
  auto text = crypto::encode_key_file(kp, passphrase, limits);
  if (auto ok = crypto::write_private_file(path_of(name), text, false); !ok) {
    if (ok.err().code == errc::already_exists)
      return make_error(errc::already_exists, "a key named '" + std::string(name) + "' already exists");
    return ok.err();
  }
  return key_entry{std::string(name), kp.public_half(), passphrase.has_value()};
}

result<key_entry> keyring::find(std::string_view name) const {
  if (auto ok = check_name(name); !ok) return ok.err();
  auto text = crypto::read_small_file(path_of(name));
  if (!text) {
    if (text.err().code == errc::not_found) return make_error(errc::not_found, "no key named '" + std::string(name) + "' (see: outlast key list)");
    return text.err();
  }
  auto info = crypto::inspect_key_file(*text);
  if (!info) return make_error(info.err().code, path_of(name).string() + ": " + info.err().message);
  return key_entry{std::string(name), info->key, info->encrypted};
}

result<std::vector<key_entry>> keyring::list(std::vector<std::string>* problems) const {
  std::vector<key_entry> out;
  std::error_code ec;
  if (!fs::exists(m_dir, ec)) return out;
  for (auto const& e : fs::directory_iterator(m_dir, ec)) {
    if (e.path().extension() != ".key") continue;
    auto k = find(e.path().stem().string());
    if (k) out.push_back(std::move(*k));
    else if (problems) problems->push_back(k.err().message);
  }
  if (ec) return make_error(errc::io_error, "cannot list " + m_dir.string() + ": " + ec.message());
  std::sort(out.begin(), out.end(), [](auto const& a, auto const& b) { return a.name < b.name; });
  return out;
}

result<crypto::key_pair> keyring::unlock(std::string_view name, std::optional<std::string_view> passphrase) const {
  if (auto ok = check_name(name); !ok) return ok.err();
  auto text = crypto::read_small_file(path_of(name));
  if (!text) return text.err();
  auto kp = crypto::decode_key_file(*text, passphrase);
  if (!kp) return make_error(kp.err().code, "key '" + std::string(name) + "': " + kp.err().message);
  return kp;
}

status keyring::export_to(std::string_view name, fs::path const& dest) const {
  auto k = find(name);
  if (!k) return k.err();
  auto text = crypto::read_small_file(path_of(name));
  if (!text) return text.err();
  return crypto::write_private_file(dest, *text, false);
}

result<key_entry> keyring::import_from(fs::path const& source, std::string_view name) {
  if (auto ok = check_name(name); !ok) return ok.err();
  auto text = crypto::read_small_file(source);
  if (!text) return text.err();
  auto info = crypto::inspect_key_file(*text);
  if (!info) return make_error(info.err().code, source.string() + ": " + info.err().message);
  if (!info->encrypted) {
    // A clear key can be checked fully now: the seed must give the stated public key.
    auto kp = crypto::decode_key_file(*text, std::nullopt);
    if (!kp) return make_error(kp.err().code, source.string() + ": " + kp.err().message);
  }
  auto existing = list();
  if (!existing) return existing.err();
  for (auto const& e : *existing)
    if (e.key == info->key)
      return make_error(errc::already_exists, "this key is already here, named '" + e.name + "'");
  if (auto ok = ensure_dir(); !ok) return ok.err();
  if (auto ok = crypto::write_private_file(path_of(name), *text, false); !ok) {
    if (ok.err().code == errc::already_exists)
      return make_error(errc::already_exists, "a key named '" + std::string(name) + "' already exists");
    return ok.err();
  }
  return key_entry{std::string(name), info->key, info->encrypted};
}

}  // namespace outlast::node
