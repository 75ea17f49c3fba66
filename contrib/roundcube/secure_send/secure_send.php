<?php

/**
 * Send Secure: a "Send Secure" button for Roundcube's compose screen.
 *
 * The button sends the message with a trigger header (default
 * "X-Secure-Send: yes") that the securemail milter reads
 * (policy.trigger_header); the milter alone decides whether the message is
 * sealed: messages to internal recipients leave as they are. Plain Send adds
 * nothing, unless the user turned on "Always send secure" in
 * Settings > Preferences > Composing Messages.
 *
 * What the plug-in promises:
 *
 * - The compose screen (new, reply, forward, draft, edit as new) shows a
 *   "Send Secure" button next to Send, also in the Elastic skin's phone
 *   layout, and a lock badge whenever the message will be sent secure.
 * - A message composed to be sent secure either carries the header when it
 *   is handed to SMTP or is not sent at all (message_before_send aborts
 *   with an error the user sees): never a silent plaintext send. Redirects
 *   and read receipts are not composed messages and are never marked.
 * - Drafts (and the Sent copy) carry the header too, so a draft reopened
 *   later is still marked secure.
 * - Optional: with secure_send_senders_file set, only the accounts the file
 *   names see the button (same format as the milter's policy.senders_files).
 *
 * Configuration (config.inc.php of the plug-in or the main config):
 * secure_send_header, secure_send_senders_file, secure_send_always_default;
 * see config.inc.php.dist.
 *
 * @license GNU GPLv3+ (like Roundcube's plug-ins); part of securemail
 */
class secure_send extends rcube_plugin
{
    public $task = 'mail|settings';

    /** The header name used when secure_send_header is not set. */
    const DEFAULT_HEADER = 'X-Secure-Send';

    /** The compose form field the client sets to "1" for Send Secure. */
    const FORM_FIELD = '_secure_send';

    /** @var rcmail */
    private $rc;

    public function init()
    {
        $this->rc = rcmail::get_instance();
        // The plug-in's own config.inc.php, if the operator made one;
        // otherwise the settings come from Roundcube's main config.
        $this->load_config();

        if (!$this->entitled()) {
            return;
        }

        if ($this->rc->task == 'mail') {
            if ($this->rc->action == 'compose') {
                $this->add_texts('localization/', true);
                $this->api->add_content($this->compose_option(), 'composeoptions');
            }
            $this->add_hook('render_page', [$this, 'render_page']);
            $this->add_hook('message_ready', [$this, 'message_ready']);
            $this->add_hook('message_before_send', [$this, 'message_before_send']);
        }
        else if ($this->rc->task == 'settings') {
            $this->add_texts('localization/');
            $this->add_hook('preferences_list', [$this, 'preferences_list']);
            $this->add_hook('preferences_save', [$this, 'preferences_save']);
        }
    }

    /**
     * render_page: on the compose screen, put the Send Secure button right
     * after Send (the Elastic skin copies every button of .formbuttons into
     * its phone toolbar) and tell the client whether the message starts
     * out secure.
     */
    public function render_page($args)
    {
        if ($args['template'] != 'compose') {
            return $args;
        }

        $this->include_script('secure_send.js');
        $this->include_stylesheet('secure_send.css');

        $button = $this->rc->output->button([
            'command'  => 'plugin.secure_send',
            'type'     => 'button',
            'id'       => 'secure-send-button',
            'class'    => 'btn btn-secondary secure-send',
            'label'    => 'secure_send.sendsecure',
            'title'    => 'secure_send.sendsecuretitle',
            'tabindex' => '1',
        ]);

        // The skin's Send button: a <button> (Elastic) or <input> (Larry)
        // whose onclick runs the "send" command.
        $send = '/<button\b[^>]*rcmail\.command\(\'send\'[^>]*>.*?<\/button>|<input\b[^>]*rcmail\.command\(\'send\'[^>]*>/s';
        $content = preg_replace($send, '$0 ' . $button, $args['content'], 1, $count);
        if ($count == 1) {
            $args['content'] = $content;
        }
        else {
            rcube::raise_error([
                'code' => 500, 'file' => __FILE__, 'line' => __LINE__,
                'message' => 'secure_send: no Send button found in the compose template of skin '
                    . $this->rc->config->get('skin') . '; the Send Secure button is missing',
            ], true, false);
        }

        $this->rc->output->set_env('secure_send', $this->starts_secure());
        $this->rc->output->set_env('secure_send_always', $this->always());

        return $args;
    }

    /**
     * The "Send secure" switch among the compose options (next to "Return
     * receipt"), for choosing before sending or before saving a draft.
     */
    private function compose_option()
    {
        $id = 'compose-secure-send';
        $checkbox = new html_checkbox(['id' => $id, 'value' => '1', 'class' => 'form-check-input', 'tabindex' => '2']);

        return html::div('form-group row form-check secure-send-option',
            html::label(['for' => $id, 'class' => 'col-form-label col-6'], rcube::Q($this->gettext('sendsecureoption')))
            . html::div('col-6 form-check', $checkbox->show())
        );
    }

    /**
     * message_ready: the message is built (for sending or as a draft); mark
     * it when the user chose Send Secure, or always sends secure.
     */
    public function message_ready($args)
    {
        if (!$this->requested()) {
            return $args;
        }

        $header = $this->header_name();
        if ($header === null) {
            // message_before_send refuses to send it; a draft is only saved.
            return $args;
        }

        $args['message']->headers([$header => 'yes'], true);
        return $args;
    }

    /**
     * message_before_send: the last look before SMTP. A message the user
     * wanted secure that does not carry the header (a broken header name,
     * another plug-in that rebuilt the message) is not sent.
     */
    public function message_before_send($args)
    {
        // Only what the compose screen sends: a redirect ("bounce") or a
        // read receipt is not composed, and message_ready never saw it.
        if ($this->rc->action != 'send' || !$this->requested()) {
            return $args;
        }

        $header  = $this->header_name();
        $headers = $args['message']->headers();
        $marked  = false;
        foreach ((array) $headers as $name => $value) {
            if ($header !== null && strcasecmp($name, $header) == 0 && strcasecmp(trim($value), 'yes') == 0) {
                $marked = true;
            }
        }

        if (!$marked) {
            rcube::raise_error([
                'code' => 500, 'file' => __FILE__, 'line' => __LINE__,
                'message' => 'secure_send: a message to be sent secure lacks its trigger header; not sent',
            ], true, false);
            $args['abort'] = true;
            $args['result'] = false;
            $args['error'] = ['label' => 'secure_send.notmarked'];
        }

        return $args;
    }

    /**
     * preferences_list: "Always send secure" in Composing Messages.
     */
    public function preferences_list($args)
    {
        if ($args['section'] != 'compose' || $this->locked()) {
            return $args;
        }

        $field_id = 'rcmfd_secure_send_always';
        $checkbox = new html_checkbox(['name' => '_secure_send_always', 'id' => $field_id, 'value' => 1]);

        $args['blocks']['main']['options']['secure_send_always'] = [
            'title'   => html::label($field_id, rcube::Q($this->gettext('alwayssendsecure'))),
            'content' => $checkbox->show($this->always() ? 1 : 0),
        ];

        return $args;
    }

    /**
     * preferences_save: store "Always send secure".
     */
    public function preferences_save($args)
    {
        if ($args['section'] != 'compose' || $this->locked()) {
            return $args;
        }

        $args['prefs']['secure_send_always']
            = rcube_utils::get_input_string('_secure_send_always', rcube_utils::INPUT_POST) === '1';

        return $args;
    }

    /** Whether the message being sent or saved must carry the header. */
    private function requested()
    {
        return $this->always()
            || rcube_utils::get_input_string(self::FORM_FIELD, rcube_utils::INPUT_POST) === '1';
    }

    /** The user's "always send secure" preference (or the operator's default). */
    private function always()
    {
        return (bool) $this->rc->config->get('secure_send_always', $this->rc->config->get('secure_send_always_default', false));
    }

    /** Whether the operator fixed the preference (dont_override). */
    private function locked()
    {
        return in_array('secure_send_always', (array) $this->rc->config->get('dont_override', []));
    }

    /**
     * The trigger header's name, or null when the configured one is not a
     * valid header field name (RFC 5322 ftext), which is logged.
     */
    private function header_name()
    {
        $name = (string) $this->rc->config->get('secure_send_header', self::DEFAULT_HEADER);
        if (preg_match('/^[\x21-\x39\x3B-\x7E]+$/', $name)) {
            return $name;
        }

        rcube::raise_error([
            'code' => 500, 'file' => __FILE__, 'line' => __LINE__,
            'message' => 'secure_send: secure_send_header is not a valid header name',
        ], true, false);

        return null;
    }

    /**
     * Whether the compose screen starts out secure: the user always sends
     * secure, or the message being edited (a draft, or "edit as new" of a
     * sent message) carries the header.
     */
    private function starts_secure()
    {
        if ($this->always()) {
            return true;
        }

        $id      = rcube_utils::get_input_string('_id', rcube_utils::INPUT_GET);
        $compose = $id !== '' && isset($_SESSION['compose_data_' . $id]) ? $_SESSION['compose_data_' . $id] : null;
        if (!is_array($compose) || empty($compose['param'])) {
            return false;
        }

        $param = $compose['param'];
        if (!empty($param['draft_uid'])) {
            $uid = $param['draft_uid'];
            $folder = $this->rc->config->get('drafts_mbox');
        }
        else if (!empty($param['uid'])) {
            $uid = $param['uid'];
            $folder = $compose['mailbox'];
        }
        else {
            return false;
        }

        $header = $this->header_name();
        if ($header === null || !strlen((string) $folder)) {
            return false;
        }

        $storage = $this->rc->get_storage();
        $current = $storage->get_folder();
        $storage->set_folder($folder);
        $raw = $storage->get_raw_headers($uid);
        $storage->set_folder($current);

        return is_string($raw) && self::header_says_yes($raw, $header);
    }

    /** Whether a raw header block has the field $name with the value yes. */
    public static function header_says_yes($raw, $name)
    {
        $unfolded = preg_replace('/\r?\n[ \t]+/', ' ', $raw);
        foreach (preg_split('/\r?\n/', $unfolded) as $line) {
            $parts = explode(':', $line, 2);
            if (count($parts) == 2 && strcasecmp(trim($parts[0]), $name) == 0
                && strcasecmp(trim($parts[1]), 'yes') == 0
            ) {
                return true;
            }
        }

        return false;
    }

    /**
     * Whether the logged-in account may send secure. Without
     * secure_send_senders_file everyone may; with it, the account's
     * address must match an entry. An unreadable file is logged and lets
     * everyone see the button: the milter makes the real decision (it
     * refuses, never sends in plaintext, a sender without the feature).
     */
    private function entitled()
    {
        $file = (string) $this->rc->config->get('secure_send_senders_file', '');
        if ($file === '' || empty($this->rc->user->ID)) {
            return true;
        }

        $text = @file_get_contents($file);
        if ($text === false) {
            rcube::raise_error([
                'code' => 500, 'file' => __FILE__, 'line' => __LINE__,
                'message' => "secure_send: cannot read secure_send_senders_file $file; showing Send Secure to everyone",
            ], true, false);
            return true;
        }

        $entries = self::parse_senders($text);
        foreach ($this->account_addresses() as $address) {
            if (self::sender_matches($entries, $address)) {
                return true;
            }
        }

        return false;
    }

    /** The login name and the default identity's address, lowercased. */
    private function account_addresses()
    {
        $out = [];
        foreach ([$this->rc->get_user_name(), $this->rc->get_user_email()] as $a) {
            $a = strtolower(trim((string) $a));
            if (strpos($a, '@') !== false) {
                $out[] = $a;
            }
        }
        return array_unique($out);
    }

    /**
     * Parses a sender list: one entry per line, "#" starts a comment,
     * blank lines ignored. Entries are "user@domain", "@domain" (that
     * domain) or ".domain" (its subdomains); all lowercased.
     *
     * @return array ['addresses' => [addr => true], 'domains' => [...], 'subdomains' => [...]]
     */
    public static function parse_senders($text)
    {
        $entries = ['addresses' => [], 'domains' => [], 'subdomains' => []];
        foreach (preg_split('/\r?\n/', (string) $text) as $line) {
            $hash = strpos($line, '#');
            if ($hash !== false) {
                $line = substr($line, 0, $hash);
            }
            $line = strtolower(trim($line));
            // One entry per line: blank lines, and lines with white space
            // or control characters inside (not an address or a domain),
            // are ignored.
            if ($line === '' || preg_match('/[\s\x00-\x1F\x7F]/', $line)) {
                continue;
            }
            if ($line[0] == '@' || $line[0] == '.') {
                // "@", "." or a "domain" with an "@" in it names no
                // domain an address can have: ignored.
                $domain = rtrim(substr($line, 1), '.');
                if ($domain !== '' && strpos($domain, '@') === false) {
                    $entries[$line[0] == '@' ? 'domains' : 'subdomains'][$domain] = true;
                }
            }
            else if (strpos($line, '@') > 0) {
                $entries['addresses'][$line] = true;
            }
        }
        return $entries;
    }

    /** Whether $address (any case) matches one of the parsed entries. */
    public static function sender_matches($entries, $address)
    {
        $address = strtolower(trim((string) $address));
        $at = strrpos($address, '@');
        if ($at === false || $at == 0) {
            return false;
        }
        if (isset($entries['addresses'][$address])) {
            return true;
        }
        $domain = rtrim(substr($address, $at + 1), '.');
        if (isset($entries['domains'][$domain])) {
            return true;
        }
        // ".example.com" covers a.example.com and a.b.example.com, not
        // example.com itself.
        for ($dot = strpos($domain, '.'); $dot !== false; $dot = strpos($domain, '.', $dot + 1)) {
            if (isset($entries['subdomains'][substr($domain, $dot + 1)])) {
                return true;
            }
        }
        return false;
    }
}
