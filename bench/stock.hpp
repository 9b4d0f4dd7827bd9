// The stock libtorrent references of the benchmarks: default settings, but on loopback only and
// with nothing that reaches out (DHT, LSD, UPnP, NAT-PMP): peers are given directly.
#pragma once

#include <libtorrent/settings_pack.hpp>

namespace outlast::bench {

inline lt::settings_pack stock_settings() {
  lt::settings_pack p;
  p.set_str(lt::settings_pack::listen_interfaces, "127.0.0.1:0");
  p.set_bool(lt::settings_pack::enable_dht, false);
  p.set_bool(lt::settings_pack::enable_lsd, false);
  p.set_bool(lt::settings_pack::enable_upnp, false);
  p.set_bool(lt::settings_pack::enable_natpmp, false);
  return p;
}

}  // namespace outlast::bench
