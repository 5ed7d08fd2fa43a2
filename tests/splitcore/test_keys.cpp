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

TEST(keys, options_before_a_key_are_its_limits_and_the_text_after_it_its_comment) {
    const auto a = splitcore::key_pair::generate().public_key;
    const auto b = splitcore::key_pair::generate().public_key;
    const auto keys = splitcore::parse_authorized_key_options(
        "from=\"10.0.0.0/8,::1\",expires=\"2027-01-31\",max-sessions=2,allow-modules=\"os, serial\","
        "deny-modules=\"ctypes\",lease " +
            a + "  # alice@lab-pc\nadmin " + b + "\n",
        "test");
    ASSERT_EQ(keys.size(), 2u);
    const auto& alice = keys.at(a);
    EXPECT_EQ(alice.comment, "alice@lab-pc");
    EXPECT_EQ(alice.from, (std::vector<std::string>{"10.0.0.0/8", "::1"}));
    ASSERT_TRUE(alice.expires);
    EXPECT_EQ(*alice.expires, 1801353600);  // 2027-01-31T00:00:00Z
    EXPECT_EQ(alice.max_sessions, std::optional<std::size_t>(2));
    EXPECT_EQ(alice.allow_modules, (std::optional<std::vector<std::string>>({"os", "serial"})));
    EXPECT_EQ(alice.deny_modules, std::vector<std::string>{"ctypes"});
    EXPECT_TRUE(alice.lease);
    EXPECT_FALSE(alice.admin);
    EXPECT_TRUE(keys.at(b).admin);
    EXPECT_TRUE(keys.at(b).lease);
    EXPECT_EQ(keys.at(b).who(b), b);
}

TEST(keys, a_bad_option_is_named_by_file_and_line) {
    const auto a = splitcore::key_pair::generate().public_key;
    for (const std::string& line : {"colour=\"red\" " + a, "expires=\"soon\" " + a, "from=\"10.0.0.0/33\" " + a,
                                    "max-sessions=two " + a, "from=\"10.0.0.0/8 " + a, std::string("lease")}) {
        try {
            (void)splitcore::parse_authorized_key_options("# ok\n" + line + "\n", "clients.keys");
            ADD_FAILURE() << "accepted: " << line;
        } catch (const splitcore::key_error& e) {
            EXPECT_NE(std::string(e.what()).find("clients.keys:2: "), std::string::npos) << e.what();
        }
    }
}

TEST(keys, a_peer_address_matches_an_address_or_a_cidr_block) {
    EXPECT_TRUE(splitcore::address_matches("10.1.2.3", "10.0.0.0/8"));
    EXPECT_TRUE(splitcore::address_matches("::ffff:10.1.2.3", "10.0.0.0/8"));
    EXPECT_FALSE(splitcore::address_matches("11.1.2.3", "10.0.0.0/8"));
    EXPECT_TRUE(splitcore::address_matches("127.0.0.1", "127.0.0.1"));
    EXPECT_FALSE(splitcore::address_matches("127.0.0.2", "127.0.0.1"));
    EXPECT_TRUE(splitcore::address_matches("fd00::5", "fd00::/8"));
    EXPECT_FALSE(splitcore::address_matches("127.0.0.1", "fd00::/8"));
    EXPECT_TRUE(splitcore::address_matches("192.168.1.77", "192.168.1.64/26"));
    EXPECT_FALSE(splitcore::address_matches("192.168.1.128", "192.168.1.64/26"));
    EXPECT_FALSE(splitcore::address_matches("not an address", "0.0.0.0/0"));
}

TEST(keys, the_public_key_is_derived_from_the_secret) {
    const auto pair = splitcore::key_pair::generate();
    EXPECT_EQ(splitcore::key_pair::from_secret(pair.secret_key).public_key, pair.public_key);
    EXPECT_THROW((void)splitcore::key_pair::from_secret("short"), splitcore::key_error);
}
