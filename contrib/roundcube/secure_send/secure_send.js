/**
 * Send Secure plug-in for Roundcube: the client side of the compose screen.
 *
 * The server puts the Send Secure button next to Send and sets
 * rcmail.env.secure_send (the message starts out secure: a secure draft,
 * or the "always send secure" preference) and rcmail.env.secure_send_always.
 * This script keeps the choice in a hidden form field (_secure_send) that is
 * posted with the message and with every draft save, mirrors it in the
 * "Send secure" compose option (choose before saving a draft), and shows a
 * lock badge whenever the message will go out secure.
 *
 * @license GNU GPLv3+; part of securemail
 */
(function () {
  'use strict';

  if (!window.rcmail) {
    return;
  }

  rcmail.addEventListener('init', function () {
    var form = rcmail.gui_objects.messageform;
    if (rcmail.env.action != 'compose' || !form) {
      return;
    }

    var field = $('<input type="hidden">').attr('name', '_secure_send').appendTo(form),
      always = !!rcmail.env.secure_send_always,
      badge = $('<div id="secure-send-badge" class="secure-send-badge" role="status" aria-live="polite">')
        .append($('<span class="secure-send-badge-text">').text(rcmail.get_label(always ? 'secure_send.badgealways' : 'secure_send.badge'))),
      undo = $('<button type="button" class="btn btn-link secure-send-undo">')
        .text(rcmail.get_label('secure_send.sendnormally'))
        .on('click', function () { set_secure(false); });

    if (!always) {
      badge.append(' ').append(undo);
    }

    // At the top of the message headers (Elastic), or of the form.
    var anchor = $('#compose-headers', form);
    badge.prependTo(anchor.length ? anchor : $(form));

    // The "Send secure" compose option (server-rendered, outside the form).
    var option = $('#compose-secure-send')
      .prop('disabled', always)
      .on('change', function () { set_secure(this.checked); });

    function set_secure(on) {
      on = on || always;
      field.val(on ? '1' : '');
      option.prop('checked', on);
      badge.toggle(on);
      $(document.body).toggleClass('secure-send-on', on);
    }

    set_secure(!!rcmail.env.secure_send);

    // A compose command: enabled with the form, disabled while sending,
    // and no "discard changes?" question when it is run.
    rcmail.env.compose_commands.push('plugin.secure_send');
    rcmail.register_command('plugin.secure_send', function () {
      set_secure(true);
      // The second argument is required: "send" reads props.nocheck.
      rcmail.command('send', {});
    }, true);
  });
})();
