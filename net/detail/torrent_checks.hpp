// libtorrent-typed forms of the checks in net/torrents.hpp, for use inside net/.
#pragma once

#include <libtorrent/torrent_info.hpp>

#include "net/torrents.hpp"

namespace outlast::net::detail {

info_hash2 v2_of(lt::torrent_info const& ti);
// A .torrent of `ti`'s info dict, byte for byte, with these piece layers (none: metadata only).
std::string torrent_bytes(lt::torrent_info const& ti, lt::entry::dictionary_type piece_layers = {});
result<torrent_summary> check_info(lt::torrent_info const& ti, std::int64_t max_size);
std::int64_t place_unchanged(lt::torrent_info const& old_ti, std::filesystem::path const& old_root,
                             lt::torrent_info const& new_ti, std::filesystem::path const& new_root);

}  // namespace outlast::net::detail
