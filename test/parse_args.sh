#!/usr/bin/env bash
# Argument parser shared by the training scripts (sourced, not run).
#
# Positional:  bash test/train_8p_full.sh 64 48 8
# Keyword:     bash test/train_8p_full.sh --batch_node_size_stage1=64 --batch_node_size_stage2=48 --num_npu=8
# Keywords win over positionals; '-' and '_' are interchangeable in keyword names. The caller sets the
# defaults beforehand. Every value must be a positive integer and each global batch must divide evenly
# over the cards. On success the variables batch_node_size_stage1, batch_node_size_stage2 and num_npu are set.

PARSE_ARGS_NAMES="batch_node_size_stage1 batch_node_size_stage2 num_npu"

parse_args_usage() {
    cat <<USAGE
usage: bash $0 [BATCH_STAGE1 BATCH_STAGE2 NUM_CARDS]
       bash $0 [--batch_node_size_stage1=N] [--batch_node_size_stage2=N] [--num_npu=N]
  BATCH_STAGE1  global batch size of stage 1 (default ${PARSE_ARGS_DEFAULTS[0]:-64})
  BATCH_STAGE2  global batch size of stage 2 (default ${PARSE_ARGS_DEFAULTS[1]:-48})
  NUM_CARDS     number of NPUs / GPUs / CPU processes (default ${PARSE_ARGS_DEFAULTS[2]:-8})
USAGE
}

parse_args_fail() {
    echo "error: $1" >&2
    parse_args_usage >&2
    return 1
}

parse_args() {
    local positional=() keyword=() arg name value
    PARSE_ARGS_DEFAULTS=("${batch_node_size_stage1:-}" "${batch_node_size_stage2:-}" "${num_npu:-}")
    for arg in "$@"; do
        case "$arg" in
            -h|--help) parse_args_usage; exit 0 ;;
            --*=*) keyword+=("$arg") ;;
            --*) parse_args_fail "argument '$arg' needs a value: ${arg}=N" || return 1 ;;
            *) positional+=("$arg") ;;
        esac
    done
    set -- $PARSE_ARGS_NAMES
    if [ "${#positional[@]}" -gt $# ]; then
        parse_args_fail "too many positional arguments (${#positional[@]}; at most $#)" || return 1
    fi
    local i=0
    for value in "${positional[@]}"; do
        i=$((i + 1))
        eval "name=\${$i}"
        printf -v "$name" '%s' "$value"
    done
    for arg in "${keyword[@]}"; do
        name="${arg%%=*}"
        name="${name#--}"
        name="${name//-/_}"
        value="${arg#*=}"
        case " $PARSE_ARGS_NAMES " in
            *" $name "*) printf -v "$name" '%s' "$value" ;;
            *) parse_args_fail "unknown argument '--${name}'" || return 1 ;;
        esac
    done
    for name in $PARSE_ARGS_NAMES; do
        value="${!name:-}"
        case "$value" in
            '') parse_args_fail "$name is empty" || return 1 ;;
            *[!0-9]*|0*) parse_args_fail "$name must be a positive integer, got '$value'" || return 1 ;;
        esac
    done
    for name in batch_node_size_stage1 batch_node_size_stage2; do
        if [ $(( ${!name} % num_npu )) -ne 0 ]; then
            parse_args_fail "$name=${!name} does not divide evenly over num_npu=$num_npu cards" || return 1
        fi
    done
    echo "[INFO] arguments parsed:"
    for name in $PARSE_ARGS_NAMES; do
        echo "  $name: ${!name}"
    done
}
