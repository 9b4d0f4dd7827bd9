#include "crypto/key_file.hpp"

#include <fcntl.h>
#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>
#include <vector>

#include "crypto/base32.hpp"

namespace outlast::crypto {

namespace {

constexpr std::string_view magic = "outlast-secret-key 1";
constexpr std::string_view cipher_name = "argon2id-xchacha20poly1305";

// The additional data binds the ciphertext to the format version and the public key, so that
// editing the `public` line of an encrypted file is detected.
std::string associated_data(public_key const& pk) {
  std::string ad(magic);
  ad.append(reinterpret_cast<char const*>(pk.bytes.data()), pk.bytes.size());
  return ad;
}

bool derive(std::array<std::uint8_t, crypto_aead_xchacha20poly1305_ietf_KEYBYTES>& key,
            std::string_view passphrase, std::span<std::uint8_t const> salt, kdf_limits limits) {
  return crypto_pwhash(key.data(), key.size(), passphrase.data(), passphrase.size(), salt.data(),
                       limits.ops, limits.mem, crypto_pwhash_ALG_ARGON2ID13) == 0;
}

struct parsed_file {
  public_key key;
  bool encrypted = false;
  std::vector<std::uint8_t> salt, nonce, secret;
  kdf_limits limits{0, 0};
};

error corrupt(std::string what) { return make_error(errc::corrupt, "damaged key file: " + what); }

result<parsed_file> parse(std::string_view text) {
  std::istringstream in{std::string(text)};
  std::string line;
  if (!std::getline(in, line) || line != magic) {
    if (line.rfind("outlast-secret-key ", 0) == 0)
      return make_error(errc::corrupt, "key file format version '" + line.substr(19) +
                                           "' is not supported by this version of outlast");
    return make_error(errc::corrupt, "not an outlast secret key file");
  }
  std::map<std::string, std::string> fields;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    auto space = line.find(' ');
    if (space == std::string::npos) return corrupt("malformed line '" + line.substr(0, 40) + "'");
    if (!fields.emplace(line.substr(0, space), line.substr(space + 1)).second)
      return corrupt("field '" + line.substr(0, space) + "' appears twice");
  }
  auto need = [&](std::string const& name) -> result<std::string> {
    auto it = fields.find(name);
    if (it == fields.end()) return corrupt("missing field '" + name + "'");
    return it->second;
  };
  auto hex_field = [&](std::string const& name, std::size_t size) -> result<std::vector<std::uint8_t>> {
    auto text_value = need(name);
    if (!text_value) return text_value.err();
    auto bytes = from_hex(*text_value);
    if (!bytes || bytes->size() != size) return corrupt("field '" + name + "' is not " + std::to_string(size) + " hex bytes");
    return bytes;
  };

  parsed_file f;
  auto pub = need("public");
  if (!pub) return pub.err();
  auto key = parse_public_key(*pub);
  if (!key) return corrupt(key.err().message);
  f.key = *key;

  auto enc = need("encryption");
  if (!enc) return enc.err();
  if (*enc == "none") {
    auto secret = hex_field("secret", key_pair::seed_size);
    if (!secret) return secret.err();
    f.secret = std::move(*secret);
    return f;
  }
  if (*enc != cipher_name) return corrupt("unknown encryption '" + *enc + "'");
  f.encrypted = true;
  auto salt = hex_field("kdf-salt", crypto_pwhash_SALTBYTES);
  auto nonce = hex_field("nonce", crypto_aead_xchacha20poly1305_ietf_NPUBBYTES);
  auto secret = hex_field("secret", key_pair::seed_size + crypto_aead_xchacha20poly1305_ietf_ABYTES);
  auto ops = need("kdf-ops");
  auto mem = need("kdf-mem");
  for (auto const* r : {&salt, &nonce, &secret})
    if (!*r) return r->err();
  if (!ops) return ops.err();
  if (!mem) return mem.err();
  try {
    std::size_t used = 0;
    f.limits.ops = std::stoull(*ops, &used);
    if (used != ops->size()) throw std::invalid_argument("ops");
    f.limits.mem = std::stoull(*mem, &used);
    if (used != mem->size()) throw std::invalid_argument("mem");
  } catch (std::exception const&) {
    return corrupt("kdf-ops or kdf-mem is not a number");
  }
  // Bounds keep a crafted file from making us allocate gigabytes or spin for hours.
  if (f.limits.ops < crypto_pwhash_OPSLIMIT_MIN || f.limits.ops > 4 * crypto_pwhash_OPSLIMIT_SENSITIVE ||
      f.limits.mem < crypto_pwhash_MEMLIMIT_MIN || f.limits.mem > 4 * std::size_t(crypto_pwhash_MEMLIMIT_SENSITIVE))
    return corrupt("key derivation limits are out of range");
  f.salt = std::move(*salt);
  f.nonce = std::move(*nonce);
  f.secret = std::move(*secret);
  return f;
}

}  // namespace

kdf_limits kdf_limits::moderate() { return {crypto_pwhash_OPSLIMIT_MODERATE, crypto_pwhash_MEMLIMIT_MODERATE}; }
kdf_limits kdf_limits::interactive() { return {crypto_pwhash_OPSLIMIT_INTERACTIVE, crypto_pwhash_MEMLIMIT_INTERACTIVE}; }

std::string encode_key_file(key_pair const& kp, std::optional<std::string_view> passphrase, kdf_limits limits) {
  init();
  std::string out(magic);
  out += "\npublic " + kp.public_half().to_text() + "\n";
  if (!passphrase) {
    out += "encryption none\nsecret " + to_hex(kp.seed()) + "\n";
    return out;
  }
  std::array<std::uint8_t, crypto_pwhash_SALTBYTES> salt;
  std::array<std::uint8_t, crypto_aead_xchacha20poly1305_ietf_NPUBBYTES> nonce;
  randombytes_buf(salt.data(), salt.size());
  randombytes_buf(nonce.data(), nonce.size());
  std::array<std::uint8_t, crypto_aead_xchacha20poly1305_ietf_KEYBYTES> key;
  if (!derive(key, *passphrase, salt, limits)) throw std::bad_alloc();  // only fails when out of memory
  std::array<std::uint8_t, key_pair::seed_size + crypto_aead_xchacha20poly1305_ietf_ABYTES> sealed;
  unsigned long long sealed_len = 0;
  auto ad = associated_data(kp.public_half());
  crypto_aead_xchacha20poly1305_ietf_encrypt(sealed.data(), &sealed_len, kp.seed().data(), kp.seed().size(),
                                             reinterpret_cast<std::uint8_t const*>(ad.data()), ad.size(),
                                             nullptr, nonce.data(), key.data());
  sodium_memzero(key.data(), key.size());
  out += "encryption " + std::string(cipher_name) + "\n";
  out += "kdf-salt " + to_hex(salt) + "\n";
  out += "kdf-ops " + std::to_string(limits.ops) + "\n";
  out += "kdf-mem " + std::to_string(limits.mem) + "\n";
  out += "nonce " + to_hex(nonce) + "\n";
  out += "secret " + to_hex(sealed) + "\n";
  return out;
}

result<key_file_info> inspect_key_file(std::string_view text) {
  auto f = parse(text);
  if (!f) return f.err();
  return key_file_info{f->key, f->encrypted};
}

result<key_pair> decode_key_file(std::string_view text, std::optional<std::string_view> passphrase) {
  init();
  auto f = parse(text);
  if (!f) return f.err();
  std::array<std::uint8_t, key_pair::seed_size> seed{};
  if (f->encrypted) {
    if (!passphrase) return make_error(errc::wrong_passphrase, "this key is encrypted: a passphrase is needed");
    std::array<std::uint8_t, crypto_aead_xchacha20poly1305_ietf_KEYBYTES> key;
    if (!derive(key, *passphrase, f->salt, f->limits))
      return make_error(errc::io_error, "not enough memory to derive the key from the passphrase");
    auto ad = associated_data(f->key);
    unsigned long long seed_len = 0;
    int rc = crypto_aead_xchacha20poly1305_ietf_decrypt(
        seed.data(), &seed_len, nullptr, f->secret.data(), f->secret.size(),
        reinterpret_cast<std::uint8_t const*>(ad.data()), ad.size(), f->nonce.data(), key.data());
    sodium_memzero(key.data(), key.size());
    if (rc != 0)
      return make_error(errc::wrong_passphrase, "wrong passphrase, or the key file was altered");
  } else {
    std::copy(f->secret.begin(), f->secret.end(), seed.begin());
  }
  auto kp = key_pair::from_seed(seed);
  sodium_memzero(seed.data(), seed.size());
  sodium_memzero(f->secret.data(), f->secret.size());
  if (kp.public_half() != f->key) return corrupt("the secret does not match the public key");
  return kp;
}

status write_private_file(std::filesystem::path const& path, std::string_view contents, bool overwrite) {
  auto fail = [&](std::string const& what) {
    return make_error(errc::io_error, what + " " + path.string() + ": " + std::strerror(errno));
  };
  if (!overwrite && std::filesystem::exists(path))
    return make_error(errc::already_exists, path.string() + " already exists");
  auto tmp = path;
  tmp += ".tmp";
  ::unlink(tmp.c_str());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return fail("cannot create");
  std::size_t done = 0;
  while (done < contents.size()) {
    ssize_t n = ::write(fd, contents.data() + done, contents.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      auto e = fail("cannot write");
      ::close(fd);
      ::unlink(tmp.c_str());
      return e;
    }
    done += static_cast<std::size_t>(n);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0) {
    auto e = fail("cannot flush");
    ::unlink(tmp.c_str());
    return e;
  }
  if (!overwrite) {
    // link() fails if the target appeared meanwhile: never replace a key we were told not to.
    if (::link(tmp.c_str(), path.c_str()) != 0) {
      auto e = errno == EEXIST ? make_error(errc::already_exists, path.string() + " already exists") : fail("cannot create");
      ::unlink(tmp.c_str());
      return e;
    }
    ::unlink(tmp.c_str());
  } else if (::rename(tmp.c_str(), path.c_str()) != 0) {
    auto e = fail("cannot replace");
    ::unlink(tmp.c_str());
    return e;
  }
  int dir = ::open(path.parent_path().empty() ? "." : path.parent_path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir >= 0) {
    ::fsync(dir);
    ::close(dir);
  }
  return {};
}

result<std::string> read_small_file(std::filesystem::path const& path, std::size_t max_size) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    if (!std::filesystem::exists(path)) return make_error(errc::not_found, path.string() + " does not exist");
    return make_error(errc::io_error, "cannot read " + path.string() + ": " + std::strerror(errno));
  }
  // Read in chunks, never more than max_size + 1 bytes: the limit bounds what is read, not what is
  // allocated up front (a 256 MiB limit must not cost 256 MiB per call).
  std::string data;
  std::array<char, 1 << 16> chunk;
  while (data.size() <= max_size && in) {
    in.read(chunk.data(), static_cast<std::streamsize>(std::min(chunk.size(), max_size + 1 - data.size())));
    data.append(chunk.data(), static_cast<std::size_t>(in.gcount()));
  }
  if (in.bad()) return make_error(errc::io_error, "cannot read " + path.string() + ": " + std::strerror(errno));
  if (data.size() > max_size)
    return make_error(errc::invalid_argument, path.string() + " is larger than " + std::to_string(max_size) + " bytes");
  return data;
}

}  // namespace outlast::crypto
