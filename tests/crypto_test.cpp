// Unit tests for outlast::crypto: base32, keys, key files, BEP 44 signed records.
#include <catch2/catch.hpp>
#include <libtorrent/kademlia/ed25519.hpp>
#include <libtorrent/kademlia/item.hpp>

#include "crypto/base32.hpp"
#include "crypto/key_file.hpp"
#include "crypto/records.hpp"
#include "tests/support/temp_dir.hpp"

using namespace outlast;
using namespace outlast::crypto;

namespace {

std::vector<std::uint8_t> unhex(std::string_view h) {
  auto r = from_hex(h);
  REQUIRE(r);
  return *r;
}

template <class T>
T from_hex_array(std::string_view h) {
  auto raw = unhex(h);
  T out;
  REQUIRE(raw.size() == out.bytes.size());
  std::copy(raw.begin(), raw.end(), out.bytes.begin());
  return out;
}

std::string as_string(std::vector<std::uint8_t> const& v) { return std::string(v.begin(), v.end()); }

}  // namespace

TEST_CASE("base32 matches RFC 4648 test vectors, lowercase, no padding", "[unit][base32]") {
  std::vector<std::pair<std::string, std::string>> vectors = {
      {"", ""}, {"f", "my"}, {"fo", "mzxq"}, {"foo", "mzxw6"}, {"foob", "mzxw6yq"}, {"fooba", "mzxw6ytb"}, {"foobar", "mzxw6ytboi"}};
  for (auto const& [plain, encoded] : vectors) {
    CHECK(base32_encode(as_bytes(plain)) == encoded);
    auto back = base32_decode(encoded);
    REQUIRE(back);
    CHECK(as_string(*back) == plain);
    std::string upper = encoded;
    for (auto& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    auto back_upper = base32_decode(upper);
    REQUIRE(back_upper);
    CHECK(as_string(*back_upper) == plain);
  }
}

TEST_CASE("base32 rejects padding, foreign characters, impossible lengths and stray bits", "[unit][base32]") {
  CHECK_FALSE(base32_decode("mzxw6==="));
  CHECK(base32_decode("mzxw6===").err().message.find("padding") != std::string::npos);
  CHECK_FALSE(base32_decode("mzxw1"));  // '1' is not in the alphabet
  CHECK_FALSE(base32_decode("m"));      // 5 bits cannot be a byte
  CHECK_FALSE(base32_decode("mzx"));
  CHECK_FALSE(base32_decode("mz"));     // 'z' leaves non-zero unused bits after one byte
}

TEST_CASE("hex decoding: empty, odd, foreign characters (the empty case was found by fuzz_key_file)", "[unit][hex]") {
  auto empty = from_hex("");
  REQUIRE(empty);
  CHECK(empty->empty());
  CHECK_FALSE(from_hex("abc"));
  CHECK_FALSE(from_hex("zz"));
  CHECK(from_hex("00ff")->size() == 2);
  // A key file whose secret line is empty is refused with a message, not undefined behaviour.
  auto kp = key_pair::generate();
  std::string text = "outlast-secret-key 1\npublic " + kp.public_half().to_text() + "\nencryption none\nsecret \n";
  CHECK_FALSE(decode_key_file(text, std::nullopt));
}

TEST_CASE("public key text is 52 lowercase characters and round-trips", "[unit][keys]") {
  auto kp = key_pair::generate();
  auto text = kp.public_half().to_text();
  CHECK(text.size() == 52);
  CHECK(text.find_first_not_of("abcdefghijklmnopqrstuvwxyz234567") == std::string::npos);
  auto parsed = parse_public_key(text);
  REQUIRE(parsed);
  CHECK(*parsed == kp.public_half());

  std::string upper = text;
  for (auto& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  auto parsed_upper = parse_public_key(upper);
  REQUIRE(parsed_upper);
  CHECK(*parsed_upper == kp.public_half());

  SECTION("wrong length says so") {
    auto r = parse_public_key(text.substr(0, 51));
    REQUIRE_FALSE(r);
    CHECK(r.err().code == errc::invalid_argument);
    CHECK(r.err().message.find("52") != std::string::npos);
  }
  SECTION("a foreign character names its position") {
    auto bad = text;
    bad[10] = '0';
    auto r = parse_public_key(bad);
    REQUIRE_FALSE(r);
    CHECK(r.err().message.find("position 11") != std::string::npos);
  }
}

TEST_CASE("signatures verify and fail on any change", "[unit][keys]") {
  auto kp = key_pair::generate();
  std::string msg = "hello";
  auto sig = kp.sign(as_bytes(msg));
  CHECK(verify(kp.public_half(), as_bytes(msg), sig));
  CHECK_FALSE(verify(kp.public_half(), as_bytes(std::string("hellp")), sig));
  CHECK_FALSE(verify(key_pair::generate().public_half(), as_bytes(msg), sig));
  auto from_seed = key_pair::from_seed(kp.seed());
  CHECK(from_seed.public_half() == kp.public_half());
}

TEST_CASE("key files round-trip in clear and encrypted", "[unit][keyfile]") {
  auto kp = key_pair::generate();

  SECTION("clear") {
    auto text = encode_key_file(kp, std::nullopt);
    auto info = inspect_key_file(text);
    REQUIRE(info);
    CHECK_FALSE(info->encrypted);
    CHECK(info->key == kp.public_half());
    auto back = decode_key_file(text, std::nullopt);
    REQUIRE(back);
    CHECK(back->public_half() == kp.public_half());
  }
  SECTION("encrypted: right, wrong and missing passphrase") {
    auto text = encode_key_file(kp, "correct horse", kdf_limits::interactive());
    CHECK(text.find(to_hex(kp.seed())) == std::string::npos);  // the seed is not in clear
    auto info = inspect_key_file(text);
    REQUIRE(info);
    CHECK(info->encrypted);
    auto back = decode_key_file(text, "correct horse");
    REQUIRE(back);
    CHECK(back->public_half() == kp.public_half());
    auto wrong = decode_key_file(text, "wrong horse");
    REQUIRE_FALSE(wrong);
    CHECK(wrong.err().code == errc::wrong_passphrase);
    auto missing = decode_key_file(text, std::nullopt);
    REQUIRE_FALSE(missing);
    CHECK(missing.err().code == errc::wrong_passphrase);
  }
}

TEST_CASE("damaged key files are clear errors, never a crash", "[unit][keyfile]") {
  auto kp = key_pair::generate();
  auto clear = encode_key_file(kp, std::nullopt);
  auto sealed = encode_key_file(kp, "pw", kdf_limits::interactive());

  CHECK(decode_key_file("", std::nullopt).err().code == errc::corrupt);
  CHECK(decode_key_file("hello\n", std::nullopt).err().code == errc::corrupt);
  auto future = decode_key_file("outlast-secret-key 9\n", std::nullopt);
  REQUIRE_FALSE(future);
  CHECK(future.err().message.find("version '9'") != std::string::npos);

  SECTION("every single-character change of a clear file is caught") {
    int caught = 0, tried = 0;
    for (std::size_t i = 0; i < clear.size(); ++i) {
      if (clear[i] == '\n') continue;
      auto bad = clear;
      bad[i] = bad[i] == 'a' ? 'b' : 'a';
      ++tried;
      auto r = decode_key_file(bad, std::nullopt);
      if (!r) ++caught;
      else CHECK(r->public_half() == kp.public_half());  // a change that still decodes must not alter the key
    }
    CHECK(caught == tried);
  }
  SECTION("a changed public line on an encrypted file fails authentication") {
    auto other = key_pair::generate().public_half().to_text();
    auto pos = sealed.find("public ") + 7;
    auto bad = sealed;
    bad.replace(pos, 52, other);
    auto r = decode_key_file(bad, "pw");
    REQUIRE_FALSE(r);
    CHECK(r.err().code == errc::wrong_passphrase);
  }
  SECTION("absurd KDF limits are refused before any work") {
    auto bad = sealed;
    auto pos = bad.find("kdf-mem ");
    auto end = bad.find('\n', pos);
    bad.replace(pos, end - pos, "kdf-mem 999999999999999");
    auto r = decode_key_file(bad, "pw");
    REQUIRE_FALSE(r);
    CHECK(r.err().code == errc::corrupt);
  }
}

// BEP 44's published test vectors.
TEST_CASE("BEP 44 test vectors verify, with and without salt", "[unit][bep44]") {
  auto pk = from_hex_array<public_key>("77ff84905a91936367c01360803104f92432fcd904a43511876df5cdf3e7e548");
  std::string value = "12:Hello World!";

  SECTION("without salt") {
    signed_item item{pk, "", 1, value,
                     from_hex_array<signature>("305ac8aeb6c9c151fa120f120ea2cfb923564e11552d06a5d856091e5e853cff"
                                               "1260d3f39e4999684aa92eb73ffd136e6f4f3ecbfda0ce53a1608ecd7ae21f01")};
    CHECK(signing_buffer("", 1, value) == "3:seqi1e1:v12:Hello World!");
    CHECK(verify_item(item));
  }
  SECTION("with salt 'foobar'") {
    signed_item item{pk, "foobar", 1, value,
                     from_hex_array<signature>("6834284b6b24c3204eb2fea824d82f88883a3d95e8b4a21b8c0ded553d17d17d"
                                               "df9a8a7104b1258f30bed3787e6cb896fca78c58f8e03b5f18f14951a87d9a08")};
    CHECK(signing_buffer("foobar", 1, value) == "4:salt6:foobar3:seqi1e1:v12:Hello World!");
    CHECK(verify_item(item));
  }
}

TEST_CASE("our signatures equal libtorrent's for the same key and item", "[unit][bep44]") {
  auto kp = key_pair::generate();
  std::array<char, 32> seed;
  std::copy(kp.seed().begin(), kp.seed().end(), seed.begin());
  auto [lt_pk, lt_sk] = lt::dht::ed25519_create_keypair(seed);
  REQUIRE(std::equal(lt_pk.bytes.begin(), lt_pk.bytes.end(), kp.public_half().bytes.begin(),
                     [](char a, std::uint8_t b) { return static_cast<std::uint8_t>(a) == b; }));
  std::string value = encode_pointer(pointer{{}, 1700000000, 4096});
  auto ours = sign_item(kp, "blog", 7, value);
  REQUIRE(ours);
  auto theirs = lt::dht::sign_mutable_item({value.data(), static_cast<std::ptrdiff_t>(value.size())}, {"blog", 4},
                                           lt::dht::sequence_number(7), lt_pk, lt_sk);
  CHECK(std::equal(theirs.bytes.begin(), theirs.bytes.end(), ours->sig.bytes.begin(),
                   [](char a, std::uint8_t b) { return static_cast<std::uint8_t>(a) == b; }));
}

TEST_CASE("signed records: every field is covered by the signature", "[unit][bep44]") {
  auto kp = key_pair::generate();
  auto item = sign_item(kp, "site", 42, encode_pointer(pointer{{1, 2, 3}, 1700000000, 123}));
  REQUIRE(item);
  REQUIRE(verify_item(*item));

  auto flip_each_bit = [&](auto mutate_field, char const* field) {
    INFO(field);
    auto size = mutate_field(*item, std::size_t(-1));  // returns the field's size in bits
    for (std::size_t bit = 0; bit < size; ++bit) {
      auto copy = *item;
      mutate_field(copy, bit);
      CHECK_FALSE(verify_item(copy));
    }
  };
  flip_each_bit([](signed_item& i, std::size_t bit) -> std::size_t {
    if (bit != std::size_t(-1)) i.key.bytes[bit / 8] ^= static_cast<std::uint8_t>(1u << (bit % 8));
    return i.key.bytes.size() * 8;
  }, "key");
  flip_each_bit([](signed_item& i, std::size_t bit) -> std::size_t {
    if (bit != std::size_t(-1)) i.sig.bytes[bit / 8] ^= static_cast<std::uint8_t>(1u << (bit % 8));
    return i.sig.bytes.size() * 8;
  }, "signature");
  flip_each_bit([](signed_item& i, std::size_t bit) -> std::size_t {
    if (bit != std::size_t(-1)) i.salt[bit / 8] = static_cast<char>(i.salt[bit / 8] ^ (1 << (bit % 8)));
    return i.salt.size() * 8;
  }, "salt");
  flip_each_bit([](signed_item& i, std::size_t bit) -> std::size_t {
    if (bit != std::size_t(-1)) i.value[bit / 8] = static_cast<char>(i.value[bit / 8] ^ (1 << (bit % 8)));
    return i.value.size() * 8;
  }, "value");
  flip_each_bit([](signed_item& i, std::size_t bit) -> std::size_t {
    if (bit != std::size_t(-1)) i.seq ^= std::int64_t(1) << bit;
    return 62;  // keep seq non-negative
  }, "seq");

  SECTION("wrong key") {
    auto copy = *item;
    copy.key = key_pair::generate().public_half();
    auto r = verify_item(copy);
    REQUIRE_FALSE(r);
    CHECK(r.err().code == errc::bad_signature);
  }
}

TEST_CASE("signed records: bounds and bencoding are enforced", "[unit][bep44]") {
  auto kp = key_pair::generate();
  SECTION("value over 1000 bytes") {
    std::string big = "1001:" + std::string(1001, 'x');  // 1006 bytes of valid bencoding
    auto r = sign_item(kp, "s", 1, big);
    REQUIRE_FALSE(r);
    CHECK(r.err().message.find("1000") != std::string::npos);
    std::string edge = "995:" + std::string(995, 'x');  // exactly 1000 bytes
    CHECK(sign_item(kp, "s", 1, edge));
  }
  SECTION("salt over 64 bytes") {
    CHECK_FALSE(sign_item(kp, std::string(65, 's'), 1, "i1e"));
    CHECK(sign_item(kp, std::string(64, 's'), 1, "i1e"));
  }
  SECTION("malformed bencoding") {
    for (std::string bad : {"", "i1", "d1:ai1e", "5:abc", "i1ei2e", "l", "x"}) {
      INFO(bad);
      CHECK_FALSE(sign_item(kp, "s", 1, bad));
    }
  }
  SECTION("negative seq") { CHECK_FALSE(sign_item(kp, "s", -1, "i1e")); }
}

TEST_CASE("signed records travel as a self-contained bencoded dict", "[unit][bep44]") {
  auto kp = key_pair::generate();
  auto item = sign_item(kp, ".notice", 3, *encode_notice(notice{1700000000, severity::critical, "moved", 1800000000, "https://x.example/"}));
  REQUIRE(item);
  auto wire = encode_item(*item);
  auto back = decode_item(wire);
  REQUIRE(back);
  CHECK(*back == *item);
  CHECK(verify_item(*back));

  CHECK_FALSE(decode_item(wire.substr(0, wire.size() - 1)));
  CHECK_FALSE(decode_item(wire + "x"));
  CHECK_FALSE(decode_item("de"));
  CHECK_FALSE(decode_item(std::string(5000, 'x')));
}

TEST_CASE("pointers and notices encode and decode", "[unit][records]") {
  pointer p;
  for (std::size_t i = 0; i < p.ih2.size(); ++i) p.ih2[i] = static_cast<std::uint8_t>(i);
  p.time = 1700000000;
  p.size = 123456789;
  auto v = encode_pointer(p);
  CHECK(v.size() <= max_value_size);
  auto back = decode_pointer(v);
  REQUIRE(back);
  CHECK(*back == p);
  // Unknown keys from a newer publisher are tolerated.
  auto extended = decode_pointer("d3:ih232:" + std::string(32, 'a') + "5:extrai9e2:szi1e1:ti2ee");
  REQUIRE(extended);
  CHECK(extended->size == 1);
  CHECK_FALSE(decode_pointer("d3:ih23:abc2:szi1e1:ti2ee"));  // short info-hash

  notice n{1700000000, severity::warning, "Our host is down. Use the mirrors: ünïcode ok", std::nullopt, std::nullopt};
  auto nv = encode_notice(n);
  REQUIRE(nv);
  auto nback = decode_notice(*nv);
  REQUIRE(nback);
  CHECK(*nback == n);

  CHECK_FALSE(encode_notice(notice{0, severity::info, std::string(701, 'x'), {}, {}}));
  CHECK(encode_notice(notice{0, severity::info, std::string(700, 'x'), {}, {}}));
  CHECK_FALSE(encode_notice(notice{0, severity::info, "bad \xff utf8", {}, {}}));
  CHECK_FALSE(decode_notice("d3:msg2:hi3:sev5:loud1:ti1ee"));
}

TEST_CASE("site names and UTF-8", "[unit][records]") {
  CHECK(valid_site_name("blog"));
  CHECK(valid_site_name("a"));
  CHECK(valid_site_name("0-news-2"));
  CHECK(valid_site_name(std::string(63, 'a')));
  CHECK_FALSE(valid_site_name(std::string(64, 'a')));
  CHECK_FALSE(valid_site_name(""));
  CHECK_FALSE(valid_site_name("-blog"));
  CHECK_FALSE(valid_site_name("Blog"));
  CHECK_FALSE(valid_site_name(".notice"));
  CHECK_FALSE(valid_site_name("a_b"));

  CHECK(valid_utf8("plain"));
  CHECK(valid_utf8("\xe2\x82\xac"));            // euro sign
  CHECK_FALSE(valid_utf8("\xc0\xaf"));          // overlong '/'
  CHECK_FALSE(valid_utf8("\xed\xa0\x80"));      // surrogate
  CHECK_FALSE(valid_utf8("\xe2\x82"));          // truncated
  CHECK_FALSE(valid_utf8("\xf4\x90\x80\x80"));  // past U+10FFFF
}

TEST_CASE("read_small_file: up to the limit, a clear error past it", "[unit][keyfile]") {
  test::temp_dir dir;
  auto path = dir / "f";
  CHECK(read_small_file(path, 10).err().code == errc::not_found);
  test::write_file(path, "");
  CHECK(read_small_file(path, 10).value().empty());
  std::string big(200000, 'x');  // several read chunks
  test::write_file(path, big);
  CHECK(read_small_file(path, big.size()).value() == big);
  auto over = read_small_file(path, big.size() - 1);
  REQUIRE_FALSE(over);
  CHECK(over.err().message.find("larger than") != std::string::npos);
}
