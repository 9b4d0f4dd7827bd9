#include "net/detail/small_files.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libtorrent/bdecode.hpp>
#include <libtorrent/entry.hpp>
#include <libtorrent/error_code.hpp>
#include <libtorrent/peer_connection_handle.hpp>
#include <libtorrent/peer_info.hpp>

#include <boost/asio/post.hpp>

#include <climits>
#include <set>

#include "net/detail/extended.hpp"
#include "net/detail/torrent_checks.hpp"

namespace outlast::net::detail {

namespace {

constexpr int local_msg_id = 32;  // ours in the extension handshake (push is 31)
// An answer: a part of a file and a few bytes of bencoding around it.
constexpr int max_message = static_cast<int>(small_chunk) + 64;

}  // namespace

std::string encode_small_answer(int index, std::string_view part, std::int64_t offset) {
  // Bencoded by hand, keys in order (d, f, o).
  auto const len = std::to_string(part.size());
  std::string out;
  out.reserve(part.size() + len.size() + 48);
  out.append("d1:d").append(len).append(":").append(part);
  out.append("1:fi").append(std::to_string(index)).append("e");
  if (offset > 0) out.append("1:oi").append(std::to_string(offset)).append("e");
  out.append("e");
  return out;
}

std::string encode_small_message(small_message const& m) {
  auto const index = std::to_string(m.index);
  if (m.request) return "d1:qi" + index + "ee";
  if (!m.data) return "d1:fi" + index + "ee";
  return encode_small_answer(m.index, *m.data, m.offset);
}

std::optional<small_message> decode_small_message(std::string_view body) {
  if (body.size() > static_cast<std::size_t>(max_message)) return std::nullopt;
  lt::error_code ec;
  int pos = 0;
  auto n = lt::bdecode({body.data(), static_cast<std::ptrdiff_t>(body.size())}, ec, &pos, 4, 16);
  if (ec || n.type() != lt::bdecode_node::dict_t) return std::nullopt;
  small_message m;
  auto q = n.dict_find_int("q");
  auto f = n.dict_find_int("f");
  if (bool(q) == bool(f)) return std::nullopt;  // one of the two
  auto index = (q ? q : f).int_value();
  if (index < 0 || index > INT_MAX) return std::nullopt;
  m.request = bool(q);
  m.index = static_cast<int>(index);
  if (auto d = n.dict_find("d")) {
    if (m.request || d.type() != lt::bdecode_node::string_t) return std::nullopt;
    auto s = d.string_value();
    if (static_cast<std::int64_t>(s.size()) > small_chunk) return std::nullopt;
    m.data = std::string(s);
  }
  if (auto o = n.dict_find("o")) {
    if (!m.data || o.type() != lt::bdecode_node::int_t) return std::nullopt;
    m.offset = o.int_value();
    if (m.offset < 0 || m.offset + static_cast<std::int64_t>(m.data->size()) > small_file_max) return std::nullopt;
  }
  return m;
}

class small_peer final : public lt::peer_plugin, public std::enable_shared_from_this<small_peer> {
 public:
  small_peer(std::shared_ptr<small_files_plugin> hub, lt::torrent_handle version, lt::bt_peer_connection_handle pc)
      : m_hub(std::move(hub)), m_version(std::move(version)), m_pc(std::move(pc)) {}

  lt::string_view type() const override { return small_file_extension; }

  void add_handshake(lt::entry& e) override { e["m"][small_file_extension] = local_msg_id; }

  bool on_extension_handshake(lt::bdecode_node const& h) override {
    m_their_id = extension_id(h, small_file_extension);
    return m_their_id != 0;  // false: the peer does not speak it, and this plugin goes away
  }

  void on_disconnect(lt::error_code const&) override { finish(); }

  bool on_extended(int length, int msg, lt::span<char const> body) override {
    if (msg != local_msg_id) return false;
    if (m_their_id == 0) return false;  // before the handshake: libtorrent disconnects the peer
    if (length < 0 || length > max_message) {
      disconnect();
      return true;
    }
    if (!m_pc.packet_finished()) return true;
    auto m = decode_small_message({body.data(), static_cast<std::size_t>(body.size())});
    if (!m) {
      disconnect();
      return true;
    }
    if (m->request) serve(m->index);
    else take(std::move(*m));
    return true;
  }

  bool speaks() const { return m_their_id != 0 && !m_pc.is_disconnecting(); }
  bool busy() const { return bool(m_done); }
  bool is_seed() const { return m_pc.is_seed(); }

  // Asks it for `files`; `done` gets those it did not send (refused, or unanswered when the
  // connection went), for another peer to be asked.
  void start(std::vector<small_file> files, small_fetch how, std::function<void(std::vector<small_file>)> done) {
    m_fetch = std::move(how);
    m_done = std::move(done);
    m_unsent.clear();
    m_queue.assign(files.rbegin(), files.rend());  // asked in order, taken from the back
    ask_more();
  }

 private:
  // Each file at most once a connection, so a peer is sent no more than the version holds (these
  // bytes bypass libtorrent's upload rate limits and send buffer watermark).
  void serve(int index) {
    auto f = m_hub->served(m_version, index);
    if (!f || m_reading >= small_reads_per_peer || m_reading_bytes + f->size > small_bytes_per_peer || backlogged() ||
        !m_served.insert(index).second) {
      ++m_hub->counters.refused;
      send({false, index, std::nullopt});
      return;
    }
    ++m_reading;
    m_reading_bytes += f->size;
    m_hub->read_file(f->path, f->size, [w = weak_from_this(), index, size = f->size](std::optional<std::string> data) {
      auto self = w.lock();
      if (!self) return;
      --self->m_reading;
      self->m_reading_bytes -= size;
      if (!data) {
        ++self->m_hub->counters.refused;
        self->send({false, index, std::nullopt});
        return;
      }
      ++self->m_hub->counters.served;
      self->m_hub->counters.bytes_served += static_cast<std::int64_t>(data->size());
      std::string_view const all = *data;
      for (std::size_t off = 0; off < all.size(); off += small_chunk)
        self->send_raw(encode_small_answer(index, all.substr(off, small_chunk), static_cast<std::int64_t>(off)));
    });
  }

  bool backlogged() const {
    lt::peer_info info;
    m_pc.get_peer_info(info);
    return info.used_send_buffer > small_send_backlog;
  }

  void take(small_message m) {
    auto it = m_wanted.find(m.index);
    if (it == m_wanted.end()) {  // not asked for, or answered already
      disconnect();
      return;
    }
    auto& want = it->second;
    if (!m.data) {  // it will not send it: another peer, or the swarm, will
      m_unsent.push_back({m.index, want.size});
      m_wanted_bytes -= want.size;
      m_wanted.erase(it);
      ask_more();
      return;
    }
    // The parts of a file come in order, and no more of them than its size.
    if (m.offset != static_cast<std::int64_t>(want.got.size()) || m.offset + static_cast<std::int64_t>(m.data->size()) > want.size) {
      disconnect();
      return;
    }
    if (want.got.empty()) want.got = std::move(*m.data);
    else want.got += *m.data;
    if (static_cast<std::int64_t>(want.got.size()) < want.size) return;
    // Whole: checked and written on the plugin's thread. Its request's slot frees now, so the next
    // request goes out with this receive (libtorrent flushes what a plugin sends while it
    // receives; a small message sent from elsewhere waits for its next tick).
    ++m_hub->counters.received;
    auto const size = want.size;
    auto data = std::move(want.got);
    m_wanted_bytes -= size;
    m_wanted.erase(it);
    ++m_writing;
    m_writing_bytes += size;
    m_hub->write_file(m_fetch.ti, m_fetch.save_path, m.index, std::move(data),
                      // Held until written, so the outcome reaches the fetch even if the
                      // connection goes meanwhile.
                      [self = shared_from_this(), index = m.index, size](small_outcome outcome) {
                        --self->m_writing;
                        self->m_writing_bytes -= size;
                        // Not the published bytes: it is asked for nothing more (what it
                        // sends is checked, but need not be received). Not disconnected: it
                        // may be the only seed.
                        if (outcome == small_outcome::mismatch) self->m_sent_bad = true;
                        if (self->m_fetch.file) self->m_fetch.file(index, size, outcome);
                        self->ask_more();
                      });
    ask_more();
  }

  // Keeps as many requests outstanding as the peer reads at once, while the files waiting to be
  // written stay under small_write_backlog; done when all are answered and written, or when one
  // it sent was not the published bytes and those in flight are answered (the rest go to the
  // next peer, or the swarm).
  void ask_more() {
    while (!m_sent_bad && !m_queue.empty() && static_cast<int>(m_wanted.size()) < small_reads_per_peer &&
           m_wanted_bytes + m_queue.back().size <= small_bytes_per_peer && m_writing_bytes < small_write_backlog && speaks()) {
      auto f = m_queue.back();
      m_queue.pop_back();
      m_wanted[f.index] = {f.size, {}};
      m_wanted_bytes += f.size;
      send({true, f.index, std::nullopt});
    }
    if (m_wanted.empty() && (m_queue.empty() || !speaks() || m_sent_bad)) finish();
  }

  // Ends the fetch: nothing more is asked, and `done` runs once the files being written are.
  void finish() {
    if (!m_done) return;
    for (auto const& f : m_queue) m_unsent.push_back(f);
    for (auto const& [index, want] : m_wanted) m_unsent.push_back({index, want.size});
    m_queue.clear();
    m_wanted.clear();
    m_wanted_bytes = 0;
    if (m_writing > 0) return;  // each write's outcome comes back through ask_more
    auto done = std::move(m_done);
    m_done = nullptr;
    m_fetch = {};
    done(std::move(m_unsent));
    m_unsent.clear();
  }

  void send(small_message const& m) { send_raw(encode_small_message(m)); }

  void send_raw(std::string const& payload) {
    if (m_their_id == 0 || m_pc.is_disconnecting()) return;
    send_extended(m_pc, m_their_id, payload);
  }

  void disconnect() {
    m_pc.disconnect(lt::errors::make_error_code(lt::errors::invalid_message), lt::operation_t::bittorrent,
                    lt::peer_connection_interface::peer_error);
  }

  std::shared_ptr<small_files_plugin> m_hub;
  lt::torrent_handle m_version;
  lt::bt_peer_connection_handle m_pc;
  int m_their_id = 0;
  int m_reading = 0;                      // its requests being read
  std::int64_t m_reading_bytes = 0;       // and their bytes
  std::set<int> m_served;                 // the files it was sent (or is being), ever
  std::vector<small_file> m_queue;        // to ask of it, last first
  struct wanted {
    std::int64_t size = 0;
    std::string got;  // the parts come so far
  };
  std::map<int, wanted> m_wanted;         // asked of it, not answered in full yet
  std::int64_t m_wanted_bytes = 0;        // and their bytes
  bool m_sent_bad = false;                // a file it sent was not the published bytes
  int m_writing = 0;                      // files that came, being checked and written
  std::int64_t m_writing_bytes = 0;       // and their bytes
  small_fetch m_fetch;                                      // its `done` unused: m_done instead
  std::function<void(std::vector<small_file>)> m_done;
  std::vector<small_file> m_unsent;                         // refused, or unanswered at the end
};

class small_torrent final : public lt::torrent_plugin {
 public:
  small_torrent(std::shared_ptr<small_files_plugin> hub, lt::torrent_handle version)
      : m_hub(std::move(hub)), m_version(std::move(version)) {}

  std::shared_ptr<lt::peer_plugin> new_connection(lt::peer_connection_handle const& pc) override {
    if (pc.type() != lt::connection_type::bittorrent) return {};
    auto p = std::make_shared<small_peer>(m_hub, m_version, lt::bt_peer_connection_handle(pc));
    std::erase_if(m_peers, [](auto const& w) { return w.expired(); });
    m_peers.push_back(p);
    return p;
  }

  // Asks a peer not tried yet for `files`, then the next for what it did not send, until none is
  // left to try; then `how.done`. False when no peer could be asked at all.
  bool fetch(std::vector<small_file> files, small_fetch how, std::shared_ptr<std::set<small_peer const*>> tried) {
    auto peer = pick(*tried);
    if (!peer) return false;
    tried->insert(peer.get());
    auto next = [w = m_self, how, tried](std::vector<small_file> unsent) {
      if (!unsent.empty())
        if (auto self = w.lock(); self && self->fetch(std::move(unsent), how, tried)) return;
      how.done();
    };
    peer->start(std::move(files), how, std::move(next));
    return true;
  }

  std::weak_ptr<small_torrent> m_self;  // set by the plugin right after construction

 private:
  // A peer that speaks the extension, is not already fetching and was not tried: a seed if there
  // is one.
  std::shared_ptr<small_peer> pick(std::set<small_peer const*> const& tried) const {
    std::shared_ptr<small_peer> any;
    for (auto const& w : m_peers) {
      auto p = w.lock();
      if (!p || !p->speaks() || p->busy() || tried.count(p.get())) continue;
      if (p->is_seed()) return p;
      if (!any) any = p;
    }
    return any;
  }

  std::shared_ptr<small_files_plugin> m_hub;
  lt::torrent_handle m_version;
  std::vector<std::weak_ptr<small_peer>> m_peers;
};

small_files_plugin::small_files_plugin() = default;

small_files_plugin::~small_files_plugin() { abort(); }

void small_files_plugin::added(lt::session_handle const& s) { m_network = &lt::session_handle(s).get_context(); }

void small_files_plugin::abort() {
  // Reads still queued are dropped; the one running finishes (it only posts).
  m_reader.stop();
  m_reader.join();
}

std::shared_ptr<lt::torrent_plugin> small_files_plugin::new_torrent(lt::torrent_handle const& h, lt::client_data_t) {
  std::erase_if(m_torrents, [](auto const& kv) { return kv.second.expired(); });
  auto t = std::make_shared<small_torrent>(shared_from_this(), h);
  t->m_self = t;
  m_torrents[h] = t;
  return t;
}

bool small_files_plugin::fetch(lt::torrent_handle const& version, std::vector<small_file> files, small_fetch how) {
  auto it = m_torrents.find(version);
  if (it == m_torrents.end()) return false;
  auto t = it->second.lock();
  return t && t->fetch(std::move(files), std::move(how), std::make_shared<std::set<small_peer const*>>());
}

void small_files_plugin::serve(lt::torrent_handle const& version, std::string save_path, std::shared_ptr<lt::torrent_info const> ti) {
  std::erase_if(m_served, [](auto const& kv) { return !kv.first.is_valid(); });
  m_served[version] = {std::move(save_path), std::move(ti)};
}

void small_files_plugin::withdraw(lt::torrent_handle const& version) { m_served.erase(version); }

std::optional<small_files_plugin::served_file> small_files_plugin::served(lt::torrent_handle const& version, int index) const {
  auto it = m_served.find(version);
  auto const file = lt::file_index_t{index};
  if (it == m_served.end() || !it->second.ti || !sent_whole(*it->second.ti, file)) return std::nullopt;
  auto const& files = it->second.ti->files();
  return served_file{it->second.save_path + "/" + files.file_path(file), files.file_size(file)};
}

void small_files_plugin::read_file(std::string path, std::int64_t size, std::function<void(std::optional<std::string>)> then) {
  if (!m_network) return;
  // Not crypto::read_small_file: O_NONBLOCK, so a FIFO put in a --no-copy publisher's directory
  // cannot hang this thread, and the size must be the one the torrent says.
  boost::asio::post(m_reader, [network = m_network, path = std::move(path), size, then = std::move(then)]() mutable {
    std::optional<std::string> data;
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    struct stat st {};
    if (fd >= 0 && ::fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size == size) {
      std::string buf(static_cast<std::size_t>(size), '\0');
      std::size_t got = 0;
      while (got < buf.size()) {
        auto n = ::pread(fd, buf.data() + got, buf.size() - got, static_cast<off_t>(got));
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        got += static_cast<std::size_t>(n);
      }
      if (got == buf.size()) data = std::move(buf);
    }
    if (fd >= 0) ::close(fd);
    boost::asio::post(*network, [then = std::move(then), data = std::move(data)]() mutable { then(std::move(data)); });
  });
}

}  // namespace outlast::net::detail

namespace outlast::net::detail {

void small_files_plugin::write_file(std::shared_ptr<lt::torrent_info const> ti, std::string save_path, int index, std::string data,
                                    std::function<void(small_outcome)> then) {
  if (!m_network) return;
  boost::asio::post(m_reader, [network = m_network, ti = std::move(ti), save_path = std::move(save_path), index, data = std::move(data),
                               then = std::move(then)]() mutable {
    auto const file = lt::file_index_t{index};
    auto outcome = !ti || !small_file_matches(*ti, file, data) ? small_outcome::mismatch
                   : write_small_file(std::filesystem::path(save_path) / ti->files().file_path(file), data)
                       ? small_outcome::written
                       : small_outcome::unwritable;
    boost::asio::post(*network, [then = std::move(then), outcome] { then(outcome); });
  });
}

}  // namespace outlast::net::detail
