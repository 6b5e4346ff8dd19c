<?php
// A Magento-1-shaped front controller for m1verify's tests: it routes like
// Magento (index.php prefix stripped even without a slash, case-insensitive,
// unknown routes answer 404 through PHP), starts a "session" on every
// request like Magento does, and logs every request so a test can prove
// whether PHP ran.
$root = __DIR__;
@file_put_contents($root . '/var/requests.log', $_SERVER['REQUEST_METHOD'] . ' ' . $_SERVER['REQUEST_URI'] . "\n", FILE_APPEND | LOCK_EX);
setcookie('frontend', 'fixture-session');

$p = rawurldecode(strtok($_SERVER['REQUEST_URI'], '?')); // not parse_url: it reads //x/ as a host
if (strncasecmp($p, '/index.php', 10) === 0) {
    $p = substr($p, 10);
}
$p = strtolower(trim(preg_replace('#/+#', '/', $p), '/'));
$route = $p === '' ? '/' : '/' . $p . '/';
$admin = trim(file_get_contents($root . '/app/etc/admin.txt'));

if (preg_match('#^/rss/(order|catalog)/#', $route)) {
    header('Content-Type: text/xml');
    echo '<?xml version="1.0"?><rss version="2.0"><channel><title>New Orders</title><item>#100000001 Jane Doe</item></channel></rss>';
    exit;
}
if (strpos($route, '/' . $admin . '/') === 0) {
    setcookie('adminhtml', 'fixture-admin');
    echo '<!DOCTYPE html><html><head><title>Log into Magento Admin Page</title></head><body><form method="post"><input name="login[username]"><input type="password" name="login[password]"></form></body></html>';
    exit;
}
$pages = array('/' => 'Home page', '/checkout/cart/' => 'Shopping Cart', '/checkout/onepage/' => 'Checkout');
if (isset($pages[$route])) {
    $inject = @file_get_contents($root . '/var/inject.html'); // stands in for design/head/includes
    echo '<!DOCTYPE html><html><head><title>' . $pages[$route] . '</title>',
        '<script type="text/javascript" src="/js/prototype/prototype.js"></script>',
        '<script type="text/javascript" src="https://cdn.allowed.example/lib.js"></script>',
        '<script type="text/javascript">var Translator = {href: "x"}; var BLANK_URL = "/js/blank.html";</script>',
        $inject === false ? '' : $inject,
        '</head><body><h1>' . $pages[$route] . '</h1></body></html>';
    exit;
}
http_response_code(404);
echo '<!DOCTYPE html><html><head><title>404 Not Found 1</title><script>var x = {href: "/"};</script></head><body>Whoops, our bad...</body></html>';
