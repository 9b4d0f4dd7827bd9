// libtorrent-typed forms of the checks in net/torrents.hpp, for use inside net/.
#pragma once

#include <libtorrent/add_torrent_params.hpp>
#include <libtorrent/bitfield.hpp>
#include <libtorrent/torrent_info.hpp>

#include <memory>
#include <string_view>
#include <utility>
#include <vector>

#include "net/torrents.hpp"

namespace outlast::net::detail {

info_hash2 v2_of(lt::torrent_info const& ti);
// A .torrent of `ti`'s info dict, byte for byte, with these piece layers (none: metadata only).
std::string torrent_bytes(lt::torrent_info const& ti, lt::entry::dictionary_type piece_layers = {});
// net::torrent_from_resume of resume data already read.
result<std::string> torrent_from_resume(lt::add_torrent_params const& atp, info_hash2 const& expect);
result<torrent_summary> check_info(lt::torrent_info const& ti, std::int64_t max_size);

// Files of the new version hard-linked (or copied) from the previous one by merkle root.
struct placement {
  std::int64_t bytes = 0;
  std::vector<std::pair<lt::file_index_t, lt::file_index_t>> files;  // (new version's file, old's)
};
placement place_unchanged(lt::torrent_info const& old_ti, std::filesystem::path const& old_root, lt::torrent_info const& new_ti,
                          std::filesystem::path const& new_root);

// How a new version starts with the files `placed` from the previous one taken as verified
// rather than read and hashed again (they are the bytes the previous version verified): its
// .torrent with those files' piece layers, so libtorrent can answer peers' hash requests for
// them, and their pieces as had. Each layer comes from the previous version's resume data
// (`old`, as read_resume_data gives it) and is checked against its root, twice (here and by
// libtorrent's parser).
// Errors: corrupt (resume data without the hashes a file needs), invalid_argument (the versions'
// piece sizes differ).
struct placed_start {
  std::shared_ptr<lt::torrent_info> ti;
  lt::typed_bitfield<lt::piece_index_t> have;
};
// Whether `data` is file `f` of `ti`, one sent whole (detail::sent_whole): its size and merkle root.
bool small_file_matches(lt::torrent_info const& ti, lt::file_index_t f, std::string_view data);
// Writes a checked small file at `path` (its folders made). False if it cannot.
bool write_small_file(std::filesystem::path const& path, std::string_view data);

result<placed_start> start_from_placed(lt::add_torrent_params const& old, lt::torrent_info const& new_ti, placement const& placed);

}  // namespace outlast::net::detail
