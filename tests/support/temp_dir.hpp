// A fresh directory under $TMPDIR (or /tmp), removed when the object goes away. Short paths on
// purpose: a node's control socket path must fit in 108 bytes.
#pragma once

#include <filesystem>
#include <string>

namespace outlast::test {

class temp_dir {
 public:
  temp_dir();
  ~temp_dir();
  temp_dir(temp_dir const&) = delete;
  temp_dir& operator=(temp_dir const&) = delete;
  std::filesystem::path const& path() const { return m_path; }
  std::filesystem::path operator/(std::filesystem::path const& p) const { return m_path / p; }

 private:
  std::filesystem::path m_path;
};

// Writes `text` to `path`, creating its parent directories.
void write_file(std::filesystem::path const& path, std::string const& text);

}  // namespace outlast::test
