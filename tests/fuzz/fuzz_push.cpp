// Push extension messages from peers (net/push.hpp).
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "net/push.hpp"

extern "C" int LLVMFuzzerTestOneInput(std::uint8_t const* data, std::size_t size) {
  auto msg = outlast::net::decode_push({reinterpret_cast<char const*>(data), size});
  if (!msg) return 0;
  // Round trip: what we accept, we can re-encode and accept again.
  auto again = outlast::net::decode_push(msg->type == outlast::net::push_message::kind::record
                                             ? outlast::net::encode_push_record(msg->record)
                                             : outlast::net::encode_push_have(msg->have));
  if (!again) __builtin_trap();
  return 0;
}
