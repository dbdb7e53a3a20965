function __livetrace_should_offer_completions_for_flags_or_options -a expected_commands
    set -l non_repeating_flags_or_options $argv[2..]
    set -l non_repeating_flags_or_options_absent 0
    set -l positional_index 0
    set -l commands
    __livetrace_parse_tokens
    test "$commands" = "$expected_commands"; and return $non_repeating_flags_or_options_absent
end

function __livetrace_should_offer_completions_for_positional -a expected_commands positional_index_comparison expected_positional_index
    set -l non_repeating_flags_or_options
    set -l non_repeating_flags_or_options_absent 0
    set -l positional_index 0
    set -l commands
    __livetrace_parse_tokens
    test "$commands" = "$expected_commands" -a \( "$positional_index" "$positional_index_comparison" "$expected_positional_index" \)
end

function __livetrace_parse_tokens -S
    set -l unparsed_tokens (__livetrace_tokens -pc)
    switch $unparsed_tokens[1]
    case 'livetrace'
        __livetrace_parse_subcommand 0 'version' 'h/help'
        switch $unparsed_tokens[1]
        case 'list'
            __livetrace_parse_subcommand -r 1 'json' 'no-lines' 'sites-only' 'summary' 'match=' 'version' 'h/help'
        case 'record'
            __livetrace_parse_subcommand -r 1 'F=+' 'P=+' 'N=+' 'D=' 't=' 'd/directory=' 'b=' 'wait=' 'p=' 'duration=' 'version' 'h/help'
        case 'report'
            __livetrace_parse_subcommand 0 'd/directory=' 's/sort=' 'avg' 'threads' 'diff=' 'json' 'version' 'h/help'
        case 'replay'
            __livetrace_parse_subcommand 0 'd/directory=' 'F=+' 'N=+' 'tid=+' 'D=' 't=' 'f=' 'color=' 'version' 'h/help'
        case 'dump'
            __livetrace_parse_subcommand 0 'd/directory=' 'chrome' 'folded' 'flame-graph=' 'perfetto=' 'version' 'h/help'
        case 'info'
            __livetrace_parse_subcommand 0 'd/directory=' 'json' 'version' 'h/help'
        case 'recover'
            __livetrace_parse_subcommand 0 'd/directory=' 'version' 'h/help'
        case 'help'
            __livetrace_parse_subcommand -r 1 'version'
        end
    end
end

function __livetrace_tokens
    if test (string split -m 1 -f 1 -- . "$FISH_VERSION") -gt 3
        commandline --tokens-raw $argv
    else
        commandline -o $argv
    end
end

function __livetrace_parse_subcommand -S -a positional_count
    argparse -s r -- $argv
    set -l option_specs $argv[2..]
    set -l is_repeating_positional $_flag_r
    set -el _flag_r
    set -a commands $unparsed_tokens[1]
    set positional_index 0
    while true
        set -e unparsed_tokens[1]
        argparse -sn "$commands" $option_specs -- $unparsed_tokens 2> /dev/null
        set unparsed_tokens $argv
        set positional_index (math $positional_index + 1)
        for non_repeating_flag_or_option in $non_repeating_flags_or_options
            if set -ql "_flag_$(string replace -a - _ -- $non_repeating_flag_or_option)"
                set non_repeating_flags_or_options_absent 1
                break
            end
        end
        test (count $unparsed_tokens) -eq 0 -o \( -z "$is_repeating_positional" -a "$positional_index" -gt "$positional_count" \) && break
    end
end

function __livetrace_complete_directories
    set -l token (commandline -t)
    string match -- '*/' $token
    set -l subdirs $token*/
    printf %s\n $subdirs
end

function __livetrace_custom_completion
    set -x SAP_SHELL fish
    set -x SAP_SHELL_VERSION $FISH_VERSION
    set -l tokens (__livetrace_tokens -p)
    if test -z "$(__livetrace_tokens -t)"
        set -l index (count (__livetrace_tokens -pc))
        set tokens $tokens[..$index] \'\' $tokens[(math $index + 1)..]
    end
    command $tokens[1] $argv $tokens
end

complete -c 'livetrace' -f
complete -c 'livetrace' -n '__livetrace_should_offer_completions_for_flags_or_options "livetrace" version' -l 'version' -d 'Show the version.'
complete -c 'livetrace' -n '__livetrace_should_offer_completions_for_flags_or_options "livetrace" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'livetrace' -n '__livetrace_should_offer_completions_for_positional "livetrace" -eq 1' -fa 'list' -d 'List the patchable sites of programs and shared libraries (read from disk, not run).'
complete -c 'livetrace' -n '__livetrace_should_offer_completions_for_positional "livetrace" -eq 1' -fa 'record' -d 'Run a program and record the entry and exit of its functions into a trace directory.'
complete -c 'livetrace' -n '__livetrace_should_offer_completions_for_positional "livetrace" -eq 1' -fa 'report' -d 'Show calls, total and self time per function of a recorded trace.'
complete -c 'livetrace' -n '__livetrace_should_offer_completions_for_positional "livetrace" -eq 1' -fa 'replay' -d 'Show each thread\'s calls as a tree with durations.'
complete -c 'livetrace' -n '__livetrace_should_offer_completions_for_positional "livetrace" -eq 1' -fa 'dump' -d 'Export a trace: Chrome JSON, Perfetto protobuf, folded stacks or an SVG flame graph.'
complete -c 'livetrace' -n '__livetrace_should_offer_completions_for_positional "livetrace" -eq 1' -fa 'info' -d 'Show what a trace holds: command, time, binaries, events and losses per thread.'
complete -c 'livetrace' -n '__livetrace_should_offer_completions_for_positional "livetrace" -eq 1' -fa 'recover' -d 'Complete a trace left by a program that died while recording itself.'
complete -c 'livetrace' -n '__livetrace_should_offer_completions_for_positional "livetrace" -eq 1' -fa 'help' -d 'Show subcommand help information.'
complete -c 'livetrace' -n '__livetrace_should_offer_completions_for_flags_or_options "livetrace list" json' -l 'json' -d 'Print JSON (schema: docs/cli-list.md).'
complete -c 'livetrace' -n '__livetrace_should_offer_completions_for_flags_or_options "livetrace list" no-lines' -l 'no-lines' -d 'Do not look up source file and line in DWARF.'
complete -c 'livetrace' -n '__livetrace_should_offer_completions_for_flags_or_options "livetrace list" sites-only' -l 'sites-only' -d 'Leave out functions that have no site (kind none).'
complete -c 'livetrace' -n '__livetrace_should_offer_completions_for_flags_or_options "livetrace list" summary' -l 'summary' -d 'Print only the per-object summary lines (no site rows).'
complete -c 'livetrace' -n '__livetrace_should_offer_completions_for_flags_or_options "livetrace list" match' -l 'match' -d 'Only functions whose name or symbol matches this glob (fnmatch: *, ?, [...]).' -rfka ''
complete -c 'livetrace' -n '__livetrace_should_offer_completions_for_flags_or_options "livetrace list" version' -l 'version' -d 'Show the version.'
complete -c 'livetrace' -n '__livetrace_should_offer_completions_for_flags_or_options "livetrace list" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'livetrace' -n '__livetrace_should_offer_completions_for_flags_or_options "livetrace record"' -s 'F' -d 'Trace only functions matching this glob (repeatable; default: every function with a site).' -rfka ''
complete -c 'livetrace' -n '__livetrace_should_offer_completions_for_flags_or_options "livetrace record"' -s 'P' -d 'Also trace functions without a site matching this glob, in any loaded object, by relocating their prologue (repeatable; without -F, only these functions are traced).' -rfka ''
complete -c 'livetrace' -n '__livetrace_should_offer_completions_for_flags_or_options "livetrace record"' -s 'N' -d 'Do not trace functions matching this glob (repeatable).' -rfka ''
complete -c 'livetrace' -n '__livetrace_should_offer_completions_for_flags_or_options "livetrace record" D' -s 'D' -d 'Record calls only down to this nesting depth (1 = the outermost traced calls).' -rfka ''
complete -c 'livetrace' -n '__livetrace_should_offer_completions_for_flags_or_options "livetrace record" t' -s 't' -d 'Leave out calls shorter than this time (e.g. 500ns, 10us, 2ms, 1s).' -rfka ''
complete -c 'livetrace' -n '__livetrace_should_offer_completions_for_flags_or_options "livetrace record" d directory' -l 'directory' -s 'd' -d 'The trace directory (an older trace there is renamed DIR.old).' -rfka ''
complete -c 'livetrace' -n '__livetrace_should_offer_completions_for_flags_or_options "livetrace record" b' -s 'b' -d 'Records per thread buffer (one per event in the common case), rounded up to a power of two; 64 buffers of 8 bytes per record are reserved on disk while recording.' -rfka ''
complete -c 'livetrace' -n '__livetrace_should_offer_completions_for_flags_or_options "livetrace record" wait' -l 'wait' -d 'Milliseconds a thread whose buffer is full waits for the drain before its events are counted lost.' -rfka ''
complete -c 'livetrace' -n '__livetrace_should_offer_completions_for_flags_or_options "livetrace record" p' -s 'p' -d 'Attach to this running process instead of starting a program; record until Ctrl-C, --duration or its exit, then restore every site and leave it running.' -rfka ''
complete -c 'livetrace' -n '__livetrace_should_offer_completions_for_flags_or_options "livetrace record" duration' -l 'duration' -d 'With -p: detach after this time (e.g. 500ms, 10s).' -rfka ''
complete -c 'livetrace' -n '__livetrace_should_offer_completions_for_flags_or_options "livetrace record" version' -l 'version' -d 'Show the version.'
complete -c 'livetrace' -n '__livetrace_should_offer_completions_for_flags_or_options "livetrace record" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'livetrace' -n '__livetrace_should_offer_completions_for_flags_or_options "livetrace report" d directory' -l 'directory' -s 'd' -d 'The trace directory.' -rfka ''
complete -c 'livetrace' -n '__livetrace_should_offer_completions_for_flags_or_options "livetrace report" s sort' -l 'sort' -s 's' -d 'Sort by total, self, calls, avg, min, max (descending) or name.' -rfka ''
complete -c 'livetrace' -n '__livetrace_should_offer_completions_for_flags_or_options "livetrace report" avg' -l 'avg' -d 'Add the average, minimum and maximum time of one call.'
complete -c 'livetrace' -n '__livetrace_should_offer_completions_for_flags_or_options "livetrace report" threads' -l 'threads' -d 'Add a table of the threads: events, calls, time, losses.'
complete -c 'livetrace' -n '__livetrace_should_offer_completions_for_flags_or_options "livetrace report" diff' -l 'diff' -d 'Compare with another trace: both side by side, with the change.' -rfka ''
complete -c 'livetrace' -n '__livetrace_should_offer_completions_for_flags_or_options "livetrace report" json' -l 'json' -d 'Print the stable JSON form instead of the table.'
complete -c 'livetrace' -n '__livetrace_should_offer_completions_for_flags_or_options "livetrace report" version' -l 'version' -d 'Show the version.'
complete -c 'livetrace' -n '__livetrace_should_offer_completions_for_flags_or_options "livetrace report" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'livetrace' -n '__livetrace_should_offer_completions_for_flags_or_options "livetrace replay" d directory' -l 'directory' -s 'd' -d 'The trace directory.' -rfka ''
complete -c 'livetrace' -n '__livetrace_should_offer_completions_for_flags_or_options "livetrace replay"' -s 'F' -d 'Show only calls of functions matching this glob and the calls inside them (repeatable).' -rfka ''
complete -c 'livetrace' -n '__livetrace_should_offer_completions_for_flags_or_options "livetrace replay"' -s 'N' -d 'Hide calls of functions matching this glob and the calls inside them (repeatable).' -rfka ''
complete -c 'livetrace' -n '__livetrace_should_offer_completions_for_flags_or_options "livetrace replay"' -l 'tid' -d 'Show only these threads (comma-separated thread ids; repeatable).' -rfka ''
complete -c 'livetrace' -n '__livetrace_should_offer_completions_for_flags_or_options "livetrace replay" D' -s 'D' -d 'Show calls down to this many levels.' -rfka ''
complete -c 'livetrace' -n '__livetrace_should_offer_completions_for_flags_or_options "livetrace replay" t' -s 't' -d 'Hide calls shorter than this time (500ns, 10us, 2ms, 1s).' -rfka ''
complete -c 'livetrace' -n '__livetrace_should_offer_completions_for_flags_or_options "livetrace replay" f' -s 'f' -d 'Columns before the function: duration, tid, both comma-separated, or none.' -rfka ''
complete -c 'livetrace' -n '__livetrace_should_offer_completions_for_flags_or_options "livetrace replay" color' -l 'color' -d 'Colour: auto (on a terminal), always or never.' -rfka ''
complete -c 'livetrace' -n '__livetrace_should_offer_completions_for_flags_or_options "livetrace replay" version' -l 'version' -d 'Show the version.'
complete -c 'livetrace' -n '__livetrace_should_offer_completions_for_flags_or_options "livetrace replay" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'livetrace' -n '__livetrace_should_offer_completions_for_flags_or_options "livetrace dump" d directory' -l 'directory' -s 'd' -d 'The trace directory.' -rfka ''
complete -c 'livetrace' -n '__livetrace_should_offer_completions_for_flags_or_options "livetrace dump" chrome' -l 'chrome' -d 'Chrome Trace Event JSON on stdout (chrome://tracing, the Perfetto UI).'
complete -c 'livetrace' -n '__livetrace_should_offer_completions_for_flags_or_options "livetrace dump" folded' -l 'folded' -d 'Folded stacks on stdout (`a;b;c NANOSECONDS`), for flame-graph tools and speedscope.'
complete -c 'livetrace' -n '__livetrace_should_offer_completions_for_flags_or_options "livetrace dump" flame-graph' -l 'flame-graph' -d 'Write an interactive SVG flame graph to this file.' -rfka ''
complete -c 'livetrace' -n '__livetrace_should_offer_completions_for_flags_or_options "livetrace dump" perfetto' -l 'perfetto' -d 'Write a Perfetto protobuf trace (TrackEvent slices) to this file.' -rfka ''
complete -c 'livetrace' -n '__livetrace_should_offer_completions_for_flags_or_options "livetrace dump" version' -l 'version' -d 'Show the version.'
complete -c 'livetrace' -n '__livetrace_should_offer_completions_for_flags_or_options "livetrace dump" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'livetrace' -n '__livetrace_should_offer_completions_for_flags_or_options "livetrace info" d directory' -l 'directory' -s 'd' -d 'The trace directory.' -rfka ''
complete -c 'livetrace' -n '__livetrace_should_offer_completions_for_flags_or_options "livetrace info" json' -l 'json' -d 'Print JSON (docs/cli-reading.md) instead of text.'
complete -c 'livetrace' -n '__livetrace_should_offer_completions_for_flags_or_options "livetrace info" version' -l 'version' -d 'Show the version.'
complete -c 'livetrace' -n '__livetrace_should_offer_completions_for_flags_or_options "livetrace info" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'livetrace' -n '__livetrace_should_offer_completions_for_flags_or_options "livetrace recover" d directory' -l 'directory' -s 'd' -d 'The trace directory.' -rfka ''
complete -c 'livetrace' -n '__livetrace_should_offer_completions_for_flags_or_options "livetrace recover" version' -l 'version' -d 'Show the version.'
complete -c 'livetrace' -n '__livetrace_should_offer_completions_for_flags_or_options "livetrace recover" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'livetrace' -n '__livetrace_should_offer_completions_for_flags_or_options "livetrace help" version' -l 'version' -d 'Show the version.'
