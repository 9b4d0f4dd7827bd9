// Waiting on conditions with deadlines, never on fixed sleeps.
#pragma once

#include <boost/asio/io_context.hpp>
#include <chrono>
#include <thread>

namespace outlast::test {

// Runs `ioc` on this thread until `pred()` holds or `timeout` passes. Returns pred().
template <class Pred>
bool run_until(boost::asio::io_context& ioc, Pred pred, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!pred()) {
    if (std::chrono::steady_clock::now() >= deadline) return pred();
    ioc.restart();
    ioc.run_for(std::chrono::milliseconds(10));
  }
  return true;
}

// Polls `pred()` every few milliseconds until it holds or `timeout` passes. Returns pred().
template <class Pred>
bool wait_until(Pred pred, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!pred()) {
    if (std::chrono::steady_clock::now() >= deadline) return pred();
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return true;
}

}  // namespace outlast::test
