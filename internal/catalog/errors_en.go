package catalog

// The portal's error pages (portal/pageerror.go): a title and one or two
// paragraphs each, rendered with Text, so they carry no marks.
func init() {
	add(English, map[string]string{
		// Titles shared by several pages.
		"error.open_again.title":      "Please open your message again",
		"error.busy.title":            "This server is busy",
		"error.too_many_opened.title": "Too many messages opened",
		"error.expired.title":         "This secure message has expired",
		"error.revoked.title":         "The sender withdrew this secure message",

		"error.form_unreadable.title": "This form could not be read",
		"error.form_unreadable.text":  "The form was too large or damaged on its way. Go back and try again.",

		"error.start_over.text":    "Your visit ended, or this page was reached out of order. Open the SecureMessageATT.html attachment in your email again and choose \"Click to read message\".",
		"error.start_over.cookies": "This site needs a cookie to remember each step. If your browser blocks cookies, allow them for this site and try again.",

		"error.account_exists.title": "You already have an account",
		"error.account_exists.text":  "An account for {Email} exists. Open the message again and sign in with your password.",

		"error.too_many_answers.title": "Too many wrong answers",
		"error.too_many_answers.text":  "The answers were wrong too many times, so this reset has ended. Open your message again and ask for a new code to start over.",

		"error.busy.text": "Too many people are using this site right now. Nothing was lost. Please try again in a minute.",

		"error.too_many_uploads.title": "Too many uploads at once",
		"error.too_many_uploads.text":  "Your browser is already sending several messages to this server. Wait until they have finished, then try again.",

		"error.upload_too_slow.title": "The upload was too slow",
		"error.upload_too_slow.text":  "Your browser sent the message too slowly, so this server stopped waiting. Check your connection and try again.",

		"error.spool_full.text": "Too many messages are being read right now, so this server cannot take yours at the moment. Nothing was lost. Please open the attachment again in a few minutes.",

		"error.too_many_opened.text": "Your browser has sent this server a great many messages in a short time. Please wait {Wait} and open the attachment again.",
		"error.too_many_links.text":  "Your browser has opened a great many messages on this server in a short time. Please wait {Wait} and follow the link again.",

		"error.unknown_link.title":      "This link does not work",
		"error.unknown_link.text":       "This site knows no message under this link. Check that you opened the whole link from the email; some apps cut long links.",
		"error.unknown_link.attachment": "You can also read the message from the email's attachment: open SecureMessageATT.html and choose \"Click to read message\".",

		"error.link_ended.title":         "This link has ended",
		"error.link_ended.kept_until":    "The link opened a copy of your message that this site kept until {Until} for reading on a phone. That copy has been deleted.",
		"error.link_ended.kept_for_time": "The link opened a copy of your message that this site kept for a limited time for reading on a phone. That copy has been deleted.",
		"error.link_ended.attachment":    "Your message can still be read: open the attachment SecureMessageATT.html in the email, on a computer if your phone cannot open it, and choose \"Click to read message\".",

		"error.link_revoked.text": "This message can no longer be opened, because it was withdrawn. The copy that this link opened has been deleted from this site, and the attachment in the email cannot be opened either.",
		"error.link_revoked.ask":  "If you still need the message, please ask the sender.",

		"error.link_expired.text": "Secure messages can be read for a limited time, and this one can no longer be opened. The copy that this link opened has been deleted from this site, and nobody can read the message now, here or anywhere else.",
		"error.expired.ask":       "If you still need it, please ask the sender to send it again.",

		"error.message_too_large.title": "This message is too large",
		"error.message_too_large.text":  "What your browser sent is larger than any secure message this server sends, so it is not one of ours. Please ask the sender to send the message again.",

		"error.damaged.title": "This secure message is damaged",
		"error.damaged.text":  "The attachment did not arrive complete or was changed on its way, so it cannot be opened. Nothing in it was shown to anyone.",
		"error.damaged.again": "Please ask the sender to send the message again. If you opened SecureMessageATT.html in an app other than a web browser, save it and open it in a browser.",

		"error.envelope_gone.text": "This page was open for a long time, so the copy of your message on this site was removed. Open the SecureMessageATT.html attachment again and choose \"Click to read message\".",

		"error.expired.text": "Secure messages can be read for a limited time, and this one can no longer be opened. Nobody can read it now, here or anywhere else.",

		"error.revoked.text": "This message can no longer be opened, because it was withdrawn. If you still need it, please ask the sender.",

		"error.no_such_page.title":      "There is no such page here",
		"error.no_such_page.text":       "The address you followed does not lead to a page of this site.",
		"error.no_such_page.attachment": "To read a secure message, open the SecureMessageATT.html attachment of its email again and choose \"Click to read message\".",

		"error.wrong_method.title": "This page cannot be used that way",
		"error.wrong_method.text":  "Your browser asked for this page in a way the page does not answer. Go back and try again, or open the attachment of the email again.",

		"error.cannot_show.title": "This message cannot be shown",
		"error.cannot_show.text":  "The message was decrypted, but its content is not in a form this page can show. Please ask the sender to send it again, perhaps without special formatting.",

		"error.no_such_attachment.title": "No such attachment",
		"error.no_such_attachment.text":  "This message has no such attachment.",

		"error.attachment_unreadable.title": "This attachment cannot be opened",
		"error.attachment_unreadable.text":  "The attachment is not in a form this page can send. Please ask the sender to send it again.",

		"error.reply_unreadable.title": "Your reply could not be read",
		"error.reply_unreadable.text":  "The form was damaged on its way. Go back and try again.",

		"error.reply_empty.title": "Your reply is empty",
		"error.reply_empty.text":  "Go back, write your reply and send it again.",

		"error.nobody_to_reply.title": "There is nobody to reply to",
		"error.nobody_to_reply.text":  "This message does not say who sent it, so a reply cannot be addressed. Contact the sender another way.",

		"error.too_many_replies.title": "You have sent many replies",
		"error.too_many_replies.text":  "Your reply was not sent: this account has sent {Limit} replies recently, which is as many as we allow in a while. Please wait {Wait} and send it again.",

		"error.reply_too_large.title": "Your reply is too large",
		"error.reply_too_large.text":  "Your reply was not sent: with its attachments it is larger than {Size}. Go back and attach fewer or smaller files.",

		"error.reply_not_sent.title": "Your reply was not sent",
		"error.reply_not_sent.text":  "This server could not send your reply just now. Nothing was sent. Go back and try again in a few minutes.",

		"error.cross_origin.title": "This form came from another site",
		"error.cross_origin.text":  "For your safety this page only accepts forms sent from this site. Go back, reload the page and try again.",

		"error.not_enabled.title": "Reading is not enabled on this server",
		"error.not_enabled.text":  "This server encrypts outgoing mail, but reading secure messages here is not set up. Your message is safe and still encrypted; please ask the sender to contact you another way.",

		"error.store_failed.title": "Please try again in a minute",
		"error.store_failed.text":  "This server could not finish your request just now. Nothing was lost. Please try again in a minute.",

		"error.internal.title": "Something went wrong",
		"error.internal.text":  "This page could not be shown because of a problem on this server. Please try again in a few minutes.",
	})
}
