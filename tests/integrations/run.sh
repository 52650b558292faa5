#!/usr/bin/env bash
# `make test-integrations [TOOLS="..."]`: every export fed to the real tool, each in its own venv (.venv-int/<tool>/,
# built from the pins beside this file on first use and whenever they change). One line per check; a failing check
# prints its log's tail; the last line counts them, and the exit status is 1 when any failed.
# Logs: .venv-int/logs/; the result lines: .venv-int/results.txt.
set -uo pipefail
cd "$(dirname "$0")/../.."
here=tests/integrations
work=.venv-int/work
tools=${*:-llm-compressor hf hf-native litgpt torch-ao}
export OMP_NUM_THREADS=1
rm -rf "$work" .venv-int/logs && mkdir -p "$work" .venv-int/logs && : > .venv-int/results.txt
passed=0 failed=0

check() {  # check NAME COMMAND...: run it niced, keep its last line as the result
  local name=$1 log=.venv-int/logs/$1.log; shift
  if nice -n 10 "$@" > "$log" 2>&1; then
    tail -n 1 "$log" | tee -a .venv-int/results.txt; passed=$((passed + 1))
  else
    echo "FAILED $name:" | tee -a .venv-int/results.txt; tail -n 15 "$log"; failed=$((failed + 1))
  fi
}

PYTHONPATH=. nice -n 10 .venv/bin/python $here/prepare.py "$work" || exit 1
for tool in $tools; do
  if ! bash $here/venv.sh "$tool"; then echo "FAILED $tool: venv"; failed=$((failed + 1)); continue; fi
  py=.venv-int/$tool/bin/python
  case $tool in
    llm-compressor)
      for d in "$work"/llm-compressor/*/; do check "lc-$(basename "$d")" $py $here/check_llm_compressor.py "$d"; done
      for d in "$work"/hf/*/; do check "hf-5.17-$(basename "$d")" $py $here/check_hf.py "$d"; done ;;
    hf)
      for d in "$work"/hf/*/; do check "hf-$(basename "$d")" $py $here/check_hf.py "$d"; done
      for d in "$work"/hf/*/; do check "load_hf-$(basename "$d")" .venv/bin/python $here/check_hf.py "$d" --load-hf; done ;;
    hf-native)
      for d in "$work"/hf/*/; do check "hf-native-$(basename "$d")" $py $here/check_hf.py "$d"; done ;;
    litgpt)
      check litgpt $py $here/check_litgpt.py "$work/litgpt" 3 ;;
    torch-ao)
      file=$(ls "$work"/torch-ao/*.py)
      check torch-ao bash -c "cd $work/torch-ao && v=\$(../../torch-ao/bin/python -c 'import torch; print(torch.__version__)') \
        && line=\$(../../torch-ao/bin/python $(basename "$file")) && echo \"torch \$v $(basename "$file"): \$line\"" ;;
    *) echo "unknown tool $tool (llm-compressor hf hf-native litgpt torch-ao)"; exit 2 ;;
  esac
done
echo "integrations: $passed passed, $failed failed"
[[ $failed == 0 ]]
