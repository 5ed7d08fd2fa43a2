#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sys/stat.h>
#include <unistd.h>

#include "splitcore/keys.hpp"

namespace fs = std::filesystem;

namespace {
struct temp_dir {
    fs::path path;
    temp_dir() {
        std::string pattern = (fs::temp_directory_path() / "splitcore-keys-XXXXXX").string();
        path = ::mkdtemp(pattern.data());
    }
    ~temp_dir() { fs::remove_all(path); }
};
}  // namespace

TEST(keys, a_saved_pair_loads_back_and_the_secret_file_is_private) {
    temp_dir dir;
    const auto pair = splitcore::key_pair::generate();
    EXPECT_TRUE(splitcore::is_z85_key(pair.public_key));
    EXPECT_TRUE(splitcore::is_z85_key(pair.secret_key));
    pair.save(dir.path / "k");
    const auto loaded = splitcore::key_pair::load(dir.path / "k");
    EXPECT_EQ(loaded.public_key, pair.public_key);
    EXPECT_EQ(loaded.secret_key, pair.secret_key);
    struct stat info {};
    ASSERT_EQ(::stat((dir.path / "k" / "agent.key").c_str(), &info), 0);
    EXPECT_EQ(info.st_mode & 0777, 0600u);
    std::ifstream pub(dir.path / "k" / "agent.pub");
    std::string line;
    std::getline(pub, line);
    EXPECT_EQ(line, pair.public_key);
}

TEST(keys, saving_never_overwrites_an_existing_key) {
    temp_dir dir;
    splitcore::key_pair::generate().save(dir.path);
    const auto before = splitcore::key_pair::load(dir.path);
    EXPECT_THROW(splitcore::key_pair::generate().save(dir.path), splitcore::key_error);
    EXPECT_EQ(splitcore::key_pair::load(dir.path).secret_key, before.secret_key);
}

TEST(keys, authorized_keys_skip_comments_and_blank_lines) {
    const auto a = splitcore::key_pair::generate().public_key;
    const auto b = splitcore::key_pair::generate().public_key;
    const auto keys = splitcore::parse_authorized_keys("# lab clients\n\n" + a + "  # alice\n  " + b + "\n", "test");
    EXPECT_EQ(keys.size(), 2u);
    EXPECT_TRUE(keys.count(a));
    EXPECT_TRUE(keys.count(b));
}

TEST(keys, a_bad_authorized_keys_line_is_named_by_file_and_line) {
    try {
        (void)splitcore::parse_authorized_keys("# ok\nnot-a-key\n", "clients.keys");
        FAIL() << "a bad line was accepted";
    } catch (const splitcore::key_error& e) {
        EXPECT_NE(std::string(e.what()).find("clients.keys:2"), std::string::npos) << e.what();
    }
}

TEST(keys, the_public_key_is_derived_from_the_secret) {
    const auto pair = splitcore::key_pair::generate();
    EXPECT_EQ(splitcore::key_pair::from_secret(pair.secret_key).public_key, pair.public_key);
    EXPECT_THROW((void)splitcore::key_pair::from_secret("short"), splitcore::key_error);
}
