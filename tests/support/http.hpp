// A tiny HTTP/1.1 client for gateway tests: sends exactly the bytes given (so tests can send
// malformed or hostile requests) and parses the answer with Beast. Bounded by a timeout.
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <string>

namespace outlast::test {

struct http_answer {
  int status = 0;  // 0: no answer (connection closed or timed out)
  std::map<std::string, std::string> headers;  // lowercase names
  std::string body;
  std::string header(std::string const& name) const {
    auto it = headers.find(name);
    return it == headers.end() ? "" : it->second;
  }
};

http_answer raw_http(int port, std::string const& request, std::chrono::milliseconds timeout = std::chrono::seconds(20),
                     bool head = false);

// GET (or another method) with the given Host and extra header lines ("Name: value\r\n...").
http_answer http_get(int port, std::string const& host, std::string const& target, std::string const& extra = "",
                     std::string const& method = "GET");

// One kept-alive connection asking for one file after another, as browsers and wrk do (http_get
// closes after each answer, which takes the gateway's general path instead). A receive_buffer
// (bytes, SO_RCVBUF) makes a reader the gateway can outrun.
class kept_alive {
 public:
  explicit kept_alive(int port, int receive_buffer = 0);
  ~kept_alive();
  kept_alive(kept_alive const&) = delete;
  kept_alive& operator=(kept_alive const&) = delete;

  void send(std::string const& host, std::string const& target);  // a GET, nothing read
  int queued();                   // bytes of the answer waiting unread in the receive queue
  http_answer receive();          // reads one answer (20 s at most)
  http_answer get(std::string const& host, std::string const& target) {
    send(host, target);
    return receive();
  }

 private:
  struct impl;
  std::unique_ptr<impl> m;
};

}  // namespace outlast::test
