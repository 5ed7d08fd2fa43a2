#!/usr/bin/env bash
# Fails when a tracked C++ file differs from what clang-format makes of it with the root .clang-format,
# and names each such file. Run from anywhere in the repository; registered as the ctest `clang_format`.
#
#   scripts/check_format.sh            check every tracked *.cpp / *.hpp / *.h
#   CLANG_FORMAT=clang-format-14 ...   which clang-format to use (default: clang-format-14, else clang-format)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

tool=${CLANG_FORMAT:-}
if [ -z "$tool" ]; then
    for candidate in clang-format-14 clang-format; do
        if command -v "$candidate" > /dev/null; then
            tool=$candidate
            break
        fi
    done
fi
if [ -z "$tool" ] || ! command -v "$tool" > /dev/null; then
    echo "check_format: clang-format not found (Debian: apt-get install clang-format-14)" >&2
    exit 77  # ctest reports the test as skipped, not passed
fi

mapfile -t files < <(git ls-files -- '*.cpp' '*.hpp' '*.h')
if ((${#files[@]} == 0)); then
    echo "check_format: no tracked C++ files under $root" >&2
    exit 2
fi
differ=()
for file in "${files[@]}"; do
    "$tool" --style=file --dry-run --Werror "$file" 2> /dev/null || differ+=("$file")
done
if ((${#differ[@]})); then
    printf '%s\n' "${differ[@]}"
    echo "check_format: ${#differ[@]} of ${#files[@]} files differ from .clang-format;" \
         "see how with: $tool --style=file --dry-run <file>; fix with: $tool -i --style=file <file>" >&2
    exit 1
fi
echo "check_format: ${#files[@]} files follow .clang-format"
