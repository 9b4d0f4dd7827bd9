// Small files of a version fetched whole over an extension message ("outlast_file"), beside the
// block transfer.
//
// BEP 52 starts every file of a v2 torrent on a piece boundary, so each small file is a piece of
// its own, and libtorrent 2.0.8 pays per piece and per block (picking, a hash request scan of
// every file of the torrent for each block received, hash jobs, HAVE messages): fetched through
// the swarm, the standard site's 5,000 pages of 20 KiB take as long as its 800 MB of larger files.
// It also requests the 16 KiB block that holds a file's end in full, the padding's zeros with it:
// a changed 20 KiB page moves 32 KiB. A node taking in a version (a first fetch or an update)
// therefore asks one peer of it for the small files it lacks, whole, checks each against its
// merkle root in the torrent and places it beside the unchanged files; what does not arrive is
// fetched by libtorrent as usual. A node answers only for the files of at most small_file_max
// bytes of the versions it holds complete.
//
// Threads: libtorrent calls the plugin on its network thread, and fetch() must be called there.
// A file asked for is read on the plugin's own thread, never on the network thread.
#pragma once

#include <libtorrent/extensions.hpp>
#include <libtorrent/session_handle.hpp>
#include <libtorrent/torrent_handle.hpp>
#include <libtorrent/torrent_info.hpp>

#include <boost/asio/io_context.hpp>
#include <boost/asio/thread_pool.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace outlast::net::detail {

inline constexpr char small_file_extension[] = "outlast_file";
constexpr std::int64_t small_file_max = 1 << 20;  // bytes of one file sent whole
// An answer carries at most this much of a file: libtorrent 2.0.8 drops a peer whose message
// exceeds 1 MiB, so a larger file comes in parts, in order.
constexpr std::int64_t small_chunk = 256 * 1024;
// A peer's requests being read at once; an asker keeps no more than this many outstanding (so at
// most this many files are in memory on either side) and is refused past it.
constexpr int small_reads_per_peer = 64;
constexpr std::int64_t small_bytes_per_peer = 4 << 20;
// An asker stops asking while this much that came waits to be checked and written.
constexpr std::int64_t small_write_backlog = 16 << 20;
// A peer whose connection holds more than this unsent is refused: an asker that does not read
// its socket cannot make the answers pile up in memory.
constexpr int small_send_backlog = 8 << 20;
constexpr std::int64_t small_block = 16 * 1024;  // BEP 52's block: libtorrent's request unit
// How long a version waits for the peer's next answer before the swarm fetches the rest instead,
// and how long it takes them from the one peer at most (the swarm fetches from every peer at once,
// and fetches nothing else meanwhile).
constexpr std::chrono::seconds small_fetch_timeout{5};
constexpr std::chrono::seconds small_fetch_budget{30};

// Whether file `f` of `ti` is one that peers send whole: a real file of at most small_file_max
// bytes, within one piece (so its merkle root is the hash of its blocks alone).
inline bool sent_whole(lt::torrent_info const& ti, lt::file_index_t f) {
  auto const& files = ti.files();
  if (f < lt::file_index_t{0} || f >= files.end_file() || files.pad_file_at(f)) return false;
  auto const size = files.file_size(f);
  return size > 0 && size <= small_file_max && size <= ti.piece_length();
}

struct small_file {
  int index = 0;
  std::int64_t size = 0;
};
// What became of a file a peer sent: checked against its root and written in place, not the
// published bytes, or not writable.
enum class small_outcome { written, mismatch, unwritable };
// A fetch: the version's metadata and folder, and its callbacks, both on the network thread:
// `file` for each file a peer sent, once checked and written (on the plugin's thread), `done`
// once every file is answered or the connection is gone.
struct small_fetch {
  std::shared_ptr<lt::torrent_info const> ti;
  std::string save_path;
  std::function<void(int index, std::int64_t bytes, small_outcome)> file;
  std::function<void()> done;
};

// The wire format, a bencoded dictionary: a request {"q": index}; an answer {"f": index, "d":
// bytes, "o": offset}, the file in parts of at most small_chunk bytes in order ("o" absent for
// the first), or {"f": index} for a file the peer will not send. Malformed: nullopt.
struct small_message {
  bool request = false;
  int index = 0;
  std::optional<std::string> data;
  std::int64_t offset = 0;  // of `data` in the file ("o", absent when 0)
};
std::string encode_small_message(small_message const& m);
// An answer carrying `part` of file `index` from `offset`: encode_small_message's bytes, with the
// part copied once.
std::string encode_small_answer(int index, std::string_view part, std::int64_t offset);
std::optional<small_message> decode_small_message(std::string_view body);

struct small_counters {
  std::atomic<std::int64_t> served{0};    // files sent to peers
  std::atomic<std::int64_t> bytes_served{0};
  std::atomic<std::int64_t> refused{0};   // requests answered with no file
  std::atomic<std::int64_t> received{0};  // files that came back (checked by the caller)
};

class small_peer;
class small_torrent;

class small_files_plugin final : public lt::plugin, public std::enable_shared_from_this<small_files_plugin> {
 public:
  small_files_plugin();
  ~small_files_plugin() override;

  void added(lt::session_handle const& s) override;
  // The session is closing: no file is read, and nothing posted to its io_context, after this.
  void abort() override;
  std::shared_ptr<lt::torrent_plugin> new_torrent(lt::torrent_handle const& h, lt::client_data_t) override;

  // Asks one connected peer of `version` that speaks the extension (a seed if there is one) for
  // `files`, at most small_reads_per_peer (and small_bytes_per_peer) at a time, counting a file
  // until it is written: what is in memory stays bounded however slow the disk. False, and no
  // callback called, when no peer speaks it.
  bool fetch(lt::torrent_handle const& version, std::vector<small_file> files, small_fetch how);

  // `version` is complete under `save_path`: peers get its small files (`files`: the torrent's
  // own metadata, read on the network thread only). withdraw() ends it.
  void serve(lt::torrent_handle const& version, std::string save_path, std::shared_ptr<lt::torrent_info const> files);
  void withdraw(lt::torrent_handle const& version);

  small_counters counters;

  // For the peer plugins: the path and size of file `index` of `version` if it is served.
  struct served_file {
    std::string path;
    std::int64_t size = 0;
  };
  std::optional<served_file> served(lt::torrent_handle const& version, int index) const;
  // Reads `path` (expected `size` bytes) on the plugin's thread and hands the bytes (nullopt if
  // it cannot) to `then` on the network thread.
  void read_file(std::string path, std::int64_t size, std::function<void(std::optional<std::string>)> then);
  // Checks `data` against file `index` of `ti` and writes it under `save_path` on the plugin's
  // thread, then hands the outcome to `then` on the network thread.
  void write_file(std::shared_ptr<lt::torrent_info const> ti, std::string save_path, int index, std::string data,
                  std::function<void(small_outcome)> then);

 private:
  boost::asio::io_context* m_network = nullptr;  // libtorrent's; outlives the plugin's reads (abort)
  boost::asio::thread_pool m_reader{1};
  std::map<lt::torrent_handle, std::weak_ptr<small_torrent>> m_torrents;
  struct served_version {
    std::string save_path;
    std::shared_ptr<lt::torrent_info const> ti;
  };
  std::map<lt::torrent_handle, served_version> m_served;
};

}  // namespace outlast::net::detail
