// The table of operations (splitcore::operations) against docs/protocol.md, which lists the same
// operations in the same order, each answered by the same tier.
#include <fstream>
#include <iterator>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "splitcore/protocol.hpp"

namespace {

struct documented_operation {
    std::string name;         // the first column, `name`
    std::string answered_by;  // the second column
};

std::string trimmed(const std::string& text) {
    const auto first = text.find_first_not_of(' ');
    if (first == std::string::npos) return {};
    return text.substr(first, text.find_last_not_of(' ') - first + 1);
}

std::vector<std::string> cells(const std::string& row) {
    std::vector<std::string> out;
    std::istringstream in(row.substr(1));  // past the leading '|'
    for (std::string cell; std::getline(in, cell, '|');) out.push_back(trimmed(cell));
    return out;
}

// The rows of the first table under the heading "## Operations".
std::vector<documented_operation> documented_operations(const std::string& path) {
    std::ifstream in(path);
    EXPECT_TRUE(in) << "cannot read " << path;
    std::vector<documented_operation> rows;
    bool in_section = false;
    bool in_table = false;
    for (std::string line; std::getline(in, line);) {
        if (line.rfind("## ", 0) == 0) {
            if (in_section) break;
            in_section = line.rfind("## Operations", 0) == 0;
            continue;
        }
        if (!in_section) continue;
        if (line.rfind("|", 0) != 0) {
            if (in_table) break;
            continue;
        }
        const bool header = !in_table;
        in_table = true;
        if (header || line.rfind("|---", 0) == 0) continue;
        const std::vector<std::string> row = cells(line);
        EXPECT_GE(row.size(), 4u) << "a row of the operations table needs op, answered by, request, reply: " << line;
        if (row.size() < 2) continue;
        std::string name = row[0];
        EXPECT_TRUE(name.size() > 2 && name.front() == '`' && name.back() == '`' &&
                    name.find('`', 1) == name.size() - 1)
            << "one operation per row, as `name`: " << line;
        if (name.size() > 2) name = name.substr(1, name.size() - 2);
        rows.push_back({name, row[1]});
    }
    EXPECT_TRUE(in_section) << path << " has no section \"## Operations\"";
    return rows;
}

}  // namespace

// SHALL: docs/protocol.md lists every operation once, with the tier that answers it.
TEST(agent_operation_table, docs_protocol_md_lists_the_operations_of_the_table_with_their_tiers) {
    const std::vector<documented_operation> documented = documented_operations(SPLITBRAIN_PROTOCOL_MD);
    ASSERT_EQ(documented.size(), std::size(splitcore::operations));
    for (std::size_t i = 0; i < documented.size(); ++i) {
        const splitcore::operation& op = splitcore::operations[i];
        EXPECT_EQ(documented[i].name, op.name) << "row " << i + 1 << " of the operations table";
        EXPECT_EQ(documented[i].answered_by, splitcore::name(op.answered_by)) << "the tier of " << op.name;
    }
}

TEST(agent_operation_table, each_operation_is_listed_once_with_a_request_and_a_reply) {
    std::set<std::string_view> names;
    for (const splitcore::operation& op : splitcore::operations) {
        EXPECT_TRUE(names.insert(op.name).second) << op.name << " is listed twice";
        EXPECT_FALSE(op.request.empty()) << op.name;
        EXPECT_FALSE(op.reply.empty()) << op.name;
        EXPECT_EQ(splitcore::op::find(op.name), &op);
    }
}

TEST(agent_operation_table, only_the_table_names_operations) {
    EXPECT_TRUE(splitcore::op::is_known("getattr"));
    EXPECT_FALSE(splitcore::op::is_known("exec"));
    EXPECT_FALSE(splitcore::op::is_known(""));
    EXPECT_EQ(splitcore::op::find("Ping"), nullptr);  // names are case-sensitive
    EXPECT_EQ(splitcore::op::ping.answered_by, splitcore::tier::supervisor);
    EXPECT_EQ(splitcore::op::cancel.answered_by, splitcore::tier::io_thread);
    EXPECT_EQ(splitcore::op::count(splitcore::tier::supervisor) + splitcore::op::count(splitcore::tier::io_thread) +
                  splitcore::op::count(splitcore::tier::main_thread),
              std::size(splitcore::operations));
}
