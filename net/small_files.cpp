#include "net/detail/small_files.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libtorrent/bdecode.hpp>
#include <libtorrent/bencode.hpp>
#include <libtorrent/entry.hpp>
#include <libtorrent/error_code.hpp>
#include <libtorrent/peer_connection_handle.hpp>

#include <boost/asio/post.hpp>

#include <climits>

#include "net/detail/extended.hpp"

namespace outlast::net::detail {

namespace {

constexpr int local_msg_id = 32;  // ours in the extension handshake (push is 31)
// An answer: the file and a few bytes of bencoding around it.
constexpr int max_message = static_cast<int>(small_file_max) + 64;

}  // namespace

std::string encode_small_message(small_message const& m) {
  lt::entry e(lt::entry::dictionary_t);
  if (m.request) {
    e["q"] = m.index;
  } else {
    e["f"] = m.index;
    if (m.data) e["d"] = *m.data;
  }
  std::string out;
  lt::bencode(std::back_inserter(out), e);
  return out;
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
    if (static_cast<std::int64_t>(s.size()) > small_file_max) return std::nullopt;
    m.data = std::string(s);
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

  void start(std::vector<small_file> const& files, std::function<void(small_file_data)> done) {
    m_done = std::move(done);
    for (auto const& f : files) {
      m_wanted[f.index] = f.size;
      send({true, f.index, std::nullopt});
    }
  }

 private:
  void serve(int index) {
    auto f = m_hub->served(m_version, index);
    if (!f || m_reading >= small_reads_per_peer || m_served >= small_fetch_max_files) {
      ++m_hub->counters.refused;
      send({false, index, std::nullopt});
      return;
    }
    ++m_reading;
    ++m_served;
    m_hub->read_file(f->path, f->size, [w = weak_from_this(), index](std::optional<std::string> data) {
      auto self = w.lock();
      if (!self) return;
      --self->m_reading;
      if (data) {
        ++self->m_hub->counters.served;
        self->m_hub->counters.bytes_served += static_cast<std::int64_t>(data->size());
      } else {
        ++self->m_hub->counters.refused;
      }
      self->send({false, index, std::move(data)});
    });
  }

  void take(small_message m) {
    auto it = m_wanted.find(m.index);
    if (it == m_wanted.end()) {  // not asked for
      disconnect();
      return;
    }
    if (m.data && static_cast<std::int64_t>(m.data->size()) == it->second) {
      ++m_hub->counters.received;
      m_got[m.index] = std::move(*m.data);
    }
    m_wanted.erase(it);
    if (m_wanted.empty()) finish();
  }

  void finish() {
    if (!m_done) return;
    auto done = std::move(m_done);
    m_done = nullptr;
    m_wanted.clear();
    done(std::move(m_got));
    m_got.clear();
  }

  void send(small_message const& m) {
    if (m_their_id == 0 || m_pc.is_disconnecting()) return;
    send_extended(m_pc, m_their_id, encode_small_message(m));
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
  int m_served = 0;                       // its requests taken (read), ever
  std::map<int, std::int64_t> m_wanted;   // asked of it: index -> size
  small_file_data m_got;
  std::function<void(small_file_data)> m_done;
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

  // A peer that speaks the extension and is not already fetching: a seed if there is one.
  std::shared_ptr<small_peer> pick() const {
    std::shared_ptr<small_peer> any;
    for (auto const& w : m_peers) {
      auto p = w.lock();
      if (!p || !p->speaks() || p->busy()) continue;
      if (p->is_seed()) return p;
      if (!any) any = p;
    }
    return any;
  }

 private:
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
  m_torrents[h] = t;
  return t;
}

bool small_files_plugin::fetch(lt::torrent_handle const& version, std::vector<small_file> const& files,
                               std::function<void(small_file_data)> done) {
  auto it = m_torrents.find(version);
  if (it == m_torrents.end()) return false;
  auto t = it->second.lock();
  if (!t) return false;
  auto peer = t->pick();
  if (!peer) return false;
  peer->start(files, std::move(done));
  return true;
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
