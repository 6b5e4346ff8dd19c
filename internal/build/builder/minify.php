<?php
// mageflow minifier (Magento 1 recipe): php -- SRC DST [SRC DST]...
// Copies each SRC tree to DST, minifying .css and .js files. It only removes
// what cannot change meaning: comments (except /*! licence */ blocks),
// indentation and blank lines; JS keeps one newline wherever the source had
// one, so automatic semicolon insertion behaves exactly as before. A file the
// tokenizer cannot follow (unterminated string/comment) is copied unchanged.
// It is fed to php on stdin, where the STDERR constant does not exist, hence
// php://stderr below.
declare(strict_types=1);

function mf_is_word(string $c): bool
{
    return $c !== '' && (ctype_alnum($c) || $c === '_' || $c === '$' || $c === '\\' || ord($c) >= 0x80);
}

function mf_css(string $s): ?string
{
    $out = '';
    $n = strlen($s);
    $space = false;
    for ($i = 0; $i < $n; $i++) {
        $c = $s[$i];
        if ($c === '/' && ($s[$i + 1] ?? '') === '*') {
            $end = strpos($s, '*/', $i + 2);
            if ($end === false) {
                return null;
            }
            if (($s[$i + 2] ?? '') === '!') {
                $out .= substr($s, $i, $end + 2 - $i) . "\n";
            } else {
                $space = true;
            }
            $i = $end + 1;
            continue;
        }
        if (ctype_space($c)) {
            $space = true;
            continue;
        }
        if ($space && $out !== '' && !in_array(substr($out, -1), ['{', '}', ';', ',', "\n"], true)
            && !in_array($c, ['{', '}', ';', ','], true)) {
            $out .= ' ';
        }
        $space = false;
        if ($c === '"' || $c === "'") {
            $j = $i + 1;
            while ($j < $n && $s[$j] !== $c) {
                if ($s[$j] === '\\') {
                    $j++;
                } elseif ($s[$j] === "\n") {
                    return null;
                }
                $j++;
            }
            if ($j >= $n) {
                return null;
            }
            $out .= substr($s, $i, $j - $i + 1);
            $i = $j;
            continue;
        }
        if (($c === 'u' || $c === 'U') && strncasecmp(substr($s, $i, 4), 'url(', 4) === 0) {
            // Unquoted url(...) may contain // or other bytes: copy verbatim.
            $k = $i + 4;
            while ($k < $n && ctype_space($s[$k])) {
                $k++;
            }
            if ($k < $n && $s[$k] !== '"' && $s[$k] !== "'") {
                $end = strpos($s, ')', $k);
                if ($end === false) {
                    return null;
                }
                $out .= substr($s, $i, $end - $i + 1);
                $i = $end;
                continue;
            }
        }
        if ($c === '}' && substr($out, -1) === ';') {
            $out = substr($out, 0, -1);
        }
        $out .= $c;
    }
    return trim($out) . "\n";
}

function mf_js(string $s): ?string
{
    $out = '';
    $n = strlen($s);
    $pending = '';          // '', ' ' or "\n": whitespace seen since last output
    $regexEnd = false;      // last output closed a regex literal
    $tpl = [];              // brace depth per open template literal ${
    $inTpl = false;
    $kw = ['return', 'typeof', 'case', 'do', 'else', 'in', 'instanceof', 'new', 'delete', 'void', 'throw', 'yield', 'await', 'of'];
    $emit = function (string $text) use (&$out, &$pending, &$regexEnd): void {
        $first = $text[0];
        $last = substr($out, -1);
        if ($pending === "\n" && $out !== '' && $last !== "\n") {
            $out .= "\n";
        } elseif ($pending !== '' && $out !== '' && $last !== "\n" && (
            (mf_is_word($last) && (mf_is_word($first) || $first === '.'))
            || ($last === '+' && $first === '+') || ($last === '-' && $first === '-')
            || ($last === '/' && ($first === '/' || $first === '*'))
            || ($regexEnd && mf_is_word($first))
        )) {
            $out .= ' ';
        }
        $pending = '';
        $regexEnd = false;
        $out .= $text;
    };
    for ($i = 0; $i < $n; $i++) {
        $c = $s[$i];
        if ($inTpl) {
            // Inside `...`: copy verbatim until the closing backtick or ${.
            $j = $i;
            while ($j < $n && $s[$j] !== '`' && !($s[$j] === '$' && ($s[$j + 1] ?? '') === '{')) {
                $j += $s[$j] === '\\' ? 2 : 1;
            }
            if ($j >= $n) {
                return null;
            }
            $out .= substr($s, $i, $j - $i);
            if ($s[$j] === '`') {
                $out .= '`';
                $inTpl = false;
                $i = $j;
            } else {
                $out .= '${';
                $tpl[] = 0;
                $inTpl = false;
                $i = $j + 1;
            }
            continue;
        }
        if ($c === ' ' || $c === "\t" || $c === "\r" || $c === "\f" || $c === "\v") {
            if ($pending === '') {
                $pending = ' ';
            }
            continue;
        }
        if ($c === "\n") {
            $pending = "\n";
            continue;
        }
        if ($c === '/' && ($s[$i + 1] ?? '') === '/') {
            $end = strpos($s, "\n", $i);
            $i = ($end === false ? $n : $end) - 1;
            if ($pending === '') {
                $pending = ' ';
            }
            continue;
        }
        if ($c === '/' && ($s[$i + 1] ?? '') === '*') {
            $end = strpos($s, '*/', $i + 2);
            if ($end === false) {
                return null;
            }
            $body = substr($s, $i, $end + 2 - $i);
            if (($s[$i + 2] ?? '') === '!') {
                $emit($body);
            } elseif (str_contains($body, "\n")) {
                $pending = "\n";
            } elseif ($pending === '') {
                $pending = ' ';
            }
            $i = $end + 1;
            continue;
        }
        if ($c === '"' || $c === "'") {
            $j = $i + 1;
            while ($j < $n && $s[$j] !== $c) {
                if ($s[$j] === "\n") {
                    return null;
                }
                $j += $s[$j] === '\\' ? 2 : 1;
            }
            if ($j >= $n) {
                return null;
            }
            $emit(substr($s, $i, $j - $i + 1));
            $i = $j;
            continue;
        }
        if ($c === '`') {
            $emit('`');
            $inTpl = true;
            continue;
        }
        if ($c === '/') {
            // Regex literal or division? Decide from the previous token.
            $trim = rtrim($out);
            $prev = substr($trim, -1);
            preg_match('/[A-Za-z_$][\w$]*$/', $trim, $m);
            $isRegex = $trim === '' || str_contains('(,=:[!&|?{};+-*%<>~^', $prev)
                || (isset($m[0]) && in_array($m[0], $kw, true));
            if ($isRegex && !$regexEnd) {
                $j = $i + 1;
                $class = false;
                while ($j < $n && ($s[$j] !== '/' || $class)) {
                    if ($s[$j] === "\n") {
                        return null;
                    }
                    if ($s[$j] === '\\') {
                        $j++;
                    } elseif ($s[$j] === '[') {
                        $class = true;
                    } elseif ($s[$j] === ']') {
                        $class = false;
                    }
                    $j++;
                }
                if ($j >= $n) {
                    return null;
                }
                $emit(substr($s, $i, $j - $i + 1));
                $regexEnd = true;
                $i = $j;
                continue;
            }
        }
        if ($tpl) {
            $top = count($tpl) - 1;
            if ($c === '{') {
                $tpl[$top]++;
            } elseif ($c === '}') {
                if ($tpl[$top] === 0) {
                    array_pop($tpl);
                    $emit('}');
                    $inTpl = true;
                    continue;
                }
                $tpl[$top]--;
            }
        }
        // Identifiers, numbers and punctuation: copy a word at once so the
        // space rule sees whole tokens.
        if (mf_is_word($c)) {
            $j = $i;
            while ($j < $n && mf_is_word($s[$j])) {
                $j++;
            }
            $emit(substr($s, $i, $j - $i));
            $i = $j - 1;
            continue;
        }
        $emit($c);
    }
    if ($inTpl || $tpl) {
        return null;
    }
    return rtrim($out) . "\n";
}

function mf_tree(string $src, string $dst, array &$stats): void
{
    $it = new RecursiveIteratorIterator(new RecursiveDirectoryIterator($src, FilesystemIterator::SKIP_DOTS), RecursiveIteratorIterator::SELF_FIRST);
    if (!is_dir($dst) && !mkdir($dst, 0755, true)) {
        throw new RuntimeException("cannot create $dst");
    }
    foreach ($it as $f) {
        $rel = substr($f->getPathname(), strlen($src) + 1);
        $to = "$dst/$rel";
        if ($f->isDir()) {
            if (!is_dir($to) && !mkdir($to, 0755, true)) {
                throw new RuntimeException("cannot create $to");
            }
            continue;
        }
        $data = (string) file_get_contents($f->getPathname());
        $ext = strtolower($f->getExtension());
        $min = null;
        if ($ext === 'css') {
            $min = mf_css($data);
        } elseif ($ext === 'js') {
            $min = mf_js($data);
        }
        if (($ext === 'css' || $ext === 'js') && $min === null) {
            file_put_contents('php://stderr', "minify: kept $src/$rel unchanged (could not tokenize it safely)\n");
        }
        if ($min !== null && strlen($min) < strlen($data)) {
            $stats['in'] += strlen($data);
            $stats['out'] += strlen($min);
            $stats['files']++;
            $data = $min;
        }
        if (file_put_contents($to, $data) === false) {
            throw new RuntimeException("cannot write $to");
        }
    }
}

if (PHP_SAPI === 'cli' && !defined('MAGEFLOW_MINIFY_LIBRARY')) {
    $args = array_slice($argv, 1);
    if ($args === [] || count($args) % 2 !== 0) {
        file_put_contents('php://stderr', "usage: php minify.php SRC DST [SRC DST]...\n");
        exit(2);
    }
    for ($k = 0; $k < count($args); $k += 2) {
        [$src, $dst] = [$args[$k], $args[$k + 1]];
        if (!is_dir($src)) {
            echo "minify: $src not present, skipped\n";
            continue;
        }
        $stats = ['in' => 0, 'out' => 0, 'files' => 0];
        mf_tree(rtrim($src, '/'), rtrim($dst, '/'), $stats);
        printf("minify: %s -> %s: %d files minified, %d -> %d bytes\n", $src, $dst, $stats['files'], $stats['in'], $stats['out']);
    }
}
