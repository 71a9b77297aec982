"""Inbound mail as MTAs and mail clients write it, for the bounce classifier's tests.

Written for these tests after the formats of Postfix 3.x DSNs, Exim 4 bounces,
RFC 5965 feedback reports, Exchange auto-replies and Thunderbird replies; line
endings are CRLF, as the SMTP listener hands them over.
"""

from __future__ import annotations


def mail(text: str) -> bytes:
    return text.replace("\r\n", "\n").replace("\n", "\r\n").encode("utf-8")


POSTFIX_DSN_5_1_1 = mail("""\
Return-Path: <>
Received: by mail.example.net (Postfix)
\tid 5D1E21C0A4; Thu,  3 Dec 2026 14:02:11 +0000 (UTC)
Date: Thu,  3 Dec 2026 14:02:11 +0000 (UTC)
From: MAILER-DAEMON@mail.example.net (Mail Delivery System)
Subject: Undelivered Mail Returned to Sender
To: bounce+c0ffee42@outdial.example
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status;
\tboundary="4B0F21C0A3.1764770531/mail.example.net"
Content-Transfer-Encoding: 8bit
Message-Id: <20261203140211.5D1E21C0A4@mail.example.net>

This is a MIME-encapsulated message.

--4B0F21C0A3.1764770531/mail.example.net
Content-Description: Notification
Content-Type: text/plain; charset=us-ascii

This is the mail system at host mail.example.net.

I'm sorry to have to inform you that your message could not
be delivered to one or more recipients. It's attached below.

For further assistance, please send mail to postmaster.

If you do so, please include this problem report. You can
delete your own text from the attached returned message.

                   The mail system

<nobody@example.org>: host mx.example.org[192.0.2.25] said: 550 5.1.1
    <nobody@example.org>: Recipient address rejected: User unknown in virtual
    mailbox table (in reply to RCPT TO command)

--4B0F21C0A3.1764770531/mail.example.net
Content-Description: Delivery report
Content-Type: message/delivery-status

Reporting-MTA: dns; mail.example.net
X-Postfix-Queue-ID: 4B0F21C0A3
X-Postfix-Sender: rfc822; bounce+c0ffee42@outdial.example
Arrival-Date: Thu,  3 Dec 2026 14:02:10 +0000 (UTC)

Final-Recipient: rfc822; nobody@example.org
Original-Recipient: rfc822;Nobody@Example.org
Action: failed
Status: 5.1.1
Remote-MTA: dns; mx.example.org
Diagnostic-Code: smtp; 550 5.1.1 <nobody@example.org>: Recipient address
    rejected: User unknown in virtual mailbox table

--4B0F21C0A3.1764770531/mail.example.net
Content-Description: Undelivered Message Headers
Content-Type: text/rfc822-headers
Content-Transfer-Encoding: 8bit

Return-Path: <bounce+c0ffee42@outdial.example>
Received: from outdial.example (outdial.example [203.0.113.5])
\tby mail.example.net (Postfix) with ESMTPS id 4B0F21C0A3
\tfor <Nobody@Example.org>; Thu,  3 Dec 2026 14:02:10 +0000 (UTC)
DKIM-Signature: v=1; a=rsa-sha256; d=outdial.example; s=s1; h=from:to:subject;
\tbh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=; b=dGVzdA==
Message-ID: <campaign-7.contact-42@outdial.example>
Date: Thu, 03 Dec 2026 14:02:09 +0000
Subject: Your appointment on Friday
From: Riverside Clinic <notify@outdial.example>
To: Nobody@Example.org
MIME-Version: 1.0
Content-Type: text/plain; charset=utf-8

--4B0F21C0A3.1764770531/mail.example.net--
""")


POSTFIX_DSN_DELAYED_4_2_2 = mail("""\
Return-Path: <>
Date: Thu,  3 Dec 2026 18:02:11 +0000 (UTC)
From: MAILER-DAEMON@mail.example.net (Mail Delivery System)
Subject: Delayed Mail (still being retried)
To: bounce+d31a7ed@outdial.example
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status;
\tboundary="77AA11C0A3.1764784931/mail.example.net"
Message-Id: <20261203180211.77AA11C0A3@mail.example.net>

This is a MIME-encapsulated message.

--77AA11C0A3.1764784931/mail.example.net
Content-Description: Notification
Content-Type: text/plain; charset=us-ascii

This is the mail system at host mail.example.net.

####################################################################
# THIS IS A WARNING ONLY.  YOU DO NOT NEED TO RESEND YOUR MESSAGE. #
####################################################################

Your message could not be delivered for more than 4 hour(s).
It will be retried until it is 5 day(s) old.

<full@example.org>: host mx.example.org[192.0.2.25] said: 452 4.2.2
    <full@example.org>: Mailbox full (in reply to RCPT TO command)

--77AA11C0A3.1764784931/mail.example.net
Content-Description: Delivery report
Content-Type: message/delivery-status

Reporting-MTA: dns; mail.example.net
X-Postfix-Queue-ID: 77AA11C0A3
Arrival-Date: Thu,  3 Dec 2026 14:02:10 +0000 (UTC)

Final-Recipient: rfc822; full@example.org
Action: delayed
Status: 4.2.2
Remote-MTA: dns; mx.example.org
Diagnostic-Code: smtp; 452 4.2.2 <full@example.org>: Mailbox full
Will-Retry-Until: Tue,  8 Dec 2026 14:02:10 +0000 (UTC)

--77AA11C0A3.1764784931/mail.example.net
Content-Description: Undelivered Message
Content-Type: message/rfc822

Return-Path: <bounce+d31a7ed@outdial.example>
Message-ID: <campaign-7.contact-43@outdial.example>
Date: Thu, 03 Dec 2026 14:02:09 +0000
Subject: Your appointment on Friday
From: Riverside Clinic <notify@outdial.example>
To: full@example.org
MIME-Version: 1.0
Content-Type: text/plain; charset=utf-8

Hello, this is a reminder of your appointment on Friday at 10:00.

--77AA11C0A3.1764784931/mail.example.net--
""")


# Exim's default bounce is plain text: no DSN part, only X-Failed-Recipients and
# prose. Only flufl.bounce's Exim detector knows the address.
EXIM_BOUNCE = mail("""\
Return-path: <>
Envelope-to: bounce+b00b5@outdial.example
Received: from mail by mx1.example.com with local (Exim 4.96)
\tid 1tQx2a-0007Lk-1V
\tfor bounce+b00b5@outdial.example; Thu, 03 Dec 2026 14:05:12 +0000
X-Failed-Recipients: gone@example.com
Auto-Submitted: auto-replied
From: Mail Delivery System <Mailer-Daemon@mx1.example.com>
To: bounce+b00b5@outdial.example
Content-Type: text/plain; charset=us-ascii
Subject: Mail delivery failed: returning message to sender
Message-Id: <E1tQx2a-0007Lk-1V@mx1.example.com>
Date: Thu, 03 Dec 2026 14:05:12 +0000

This message was created automatically by mail delivery software.

A message that you sent could not be delivered to one or more of its
recipients. This is a permanent error. The following address(es) failed:

  gone@example.com
    host mx.example.com [198.51.100.7]
    SMTP error from remote mail server after RCPT TO:<gone@example.com>:
    550 5.1.1 <gone@example.com>: Recipient address rejected: User unknown

------ This is a copy of the message, including all the headers. ------

Return-path: <bounce+b00b5@outdial.example>
Received: from [203.0.113.5] (helo=outdial.example)
\tby mx1.example.com with esmtps (TLS1.3) (Exim 4.96)
\tid 1tQx2Z-0007Lg-3B
\tfor gone@example.com; Thu, 03 Dec 2026 14:05:11 +0000
Message-ID: <campaign-7.contact-99@outdial.example>
Date: Thu, 03 Dec 2026 14:05:10 +0000
From: Riverside Clinic <notify@outdial.example>
To: gone@example.com
Subject: Your appointment on Friday

Hello, this is a reminder of your appointment on Friday at 10:00.
""")


ARF_COMPLAINT = mail("""\
From: Mail Abuse Desk <abuse@isp.example>
Date: Thu, 03 Dec 2026 15:00:00 +0000
Subject: FW: Your appointment on Friday
To: <bounce+fb1ab5e@outdial.example>
MIME-Version: 1.0
Message-ID: <arf-20261203-0001@isp.example>
Content-Type: multipart/report; report-type=feedback-report;
     boundary="part1_13d.2e68ed54_boundary"

--part1_13d.2e68ed54_boundary
Content-Type: text/plain; charset="US-ASCII"
Content-Transfer-Encoding: 7bit

This is an email abuse report for an email message received from IP
203.0.113.5 on Thu, 03 Dec 2026 14:02:10 +0000.

--part1_13d.2e68ed54_boundary
Content-Type: message/feedback-report

Feedback-Type: abuse
User-Agent: IspFeedbackLoop/2.1
Version: 1
Original-Mail-From: <bounce+fb1ab5e@outdial.example>
Original-Rcpt-To: <annoyed@isp.example>
Arrival-Date: Thu, 03 Dec 2026 14:02:10 +0000
Reporting-MTA: dns; mail.isp.example
Source-IP: 203.0.113.5
Authentication-Results: mail.isp.example;
        spf=pass smtp.mail=bounce+fb1ab5e@outdial.example
Reported-Domain: outdial.example

--part1_13d.2e68ed54_boundary
Content-Type: message/rfc822
Content-Disposition: inline

From: Riverside Clinic <notify@outdial.example>
To: Annoyed Person <annoyed@isp.example>
Subject: Your appointment on Friday
Message-ID: <campaign-7.contact-7@outdial.example>
Date: Thu, 03 Dec 2026 14:02:09 +0000

Hello, this is a reminder of your appointment on Friday at 10:00.

--part1_13d.2e68ed54_boundary--
""")


EXCHANGE_AUTO_REPLY = mail("""\
From: Pat Jones <pat.jones@example.com>
To: Riverside Clinic <notify@outdial.example>
Subject: Automatic reply: Your appointment on Friday
Thread-Topic: Your appointment on Friday
Date: Thu, 3 Dec 2026 14:02:30 +0000
Message-ID: <a7e1b2c3d4@EXCH01.example.com>
In-Reply-To: <campaign-7.contact-5@outdial.example>
References: <campaign-7.contact-5@outdial.example>
Auto-Submitted: auto-replied
X-Auto-Response-Suppress: All
X-MS-Exchange-Inbox-Rules-Loop: pat.jones@example.com
Content-Type: text/plain; charset="us-ascii"
MIME-Version: 1.0

I am out of the office until Monday 7 December with no access to email.
""")


HUMAN_REPLY = mail("""\
Return-Path: <sam@example.com>
From: =?UTF-8?Q?Sam_L=C3=A9vesque?= <sam@example.com>
To: Riverside Clinic <reply+r3ply7@outdial.example>
Subject: Re: Your appointment on Friday
Date: Thu, 3 Dec 2026 14:20:00 +0100
Message-ID: <4f1c9a2e-77b1-4d0e-9d43-2b1c1e0f9a11@example.com>
In-Reply-To: <campaign-7.contact-8@outdial.example>
References: <campaign-6.contact-8@outdial.example>
 <campaign-7.contact-8@outdial.example>
User-Agent: Mozilla Thunderbird
MIME-Version: 1.0
Content-Type: multipart/alternative;
 boundary="------------Xq8N2f3LrT0gH5"

This is a multi-part message in MIME format.
--------------Xq8N2f3LrT0gH5
Content-Type: text/plain; charset=UTF-8; format=flowed
Content-Transfer-Encoding: quoted-printable

Yes, Friday at 10 is fine. Could I bring my daughter? Merci, =C3=A9t=C3=A9 =
is busy.

Sam

--=20
Sam L=C3=A9vesque
Mobile 555 0100

On 03/12/2026 15:02, Riverside Clinic wrote:
> Hello, this is a reminder of your appointment on Friday at 10:00.
> Reply to this email to confirm.

--------------Xq8N2f3LrT0gH5
Content-Type: text/html; charset=UTF-8
Content-Transfer-Encoding: 7bit

<html><body><p>Yes, Friday at 10 is fine.</p></body></html>

--------------Xq8N2f3LrT0gH5--
""")


HTML_ONLY_REPLY = mail("""\
From: Kim <kim@example.com>
To: notify@outdial.example
Subject: RE: Your appointment on Friday
Message-ID: <kim-1@example.com>
In-Reply-To: <campaign-7.contact-9@outdial.example>
Content-Type: text/html; charset=utf-8

<html><head><style>p { color: red; }</style></head>
<body><div>Please move it to&nbsp;Monday &amp; call me.</div><br>
<div>Kim</div><script>alert(1)</script></body></html>
""")


# A charset that does not exist, in an encoded word and on the body, and raw 8-bit
# octets in a header: the message must still read as a reply.
BAD_CHARSET_REPLY = (
    b"From: \xc9mile Dupont <emile@example.fr>\r\n"
    b"To: notify@outdial.example\r\n"
    b"Subject: =?x-made-up?Q?Re:_caf=E9_time?=\r\n"
    b"Message-ID: <bad-cs-1@example.fr>\r\n"
    b"In-Reply-To: <campaign-7.contact-11@outdial.example>\r\n"
    b'Content-Type: text/plain; charset="x-made-up-8bit"\r\n'
    b"Content-Transfer-Encoding: 8bit\r\n"
    b"\r\n"
    b"Oui, caf\xe9 at 10 works. \xff\xfe\r\n"
)


GARBAGE = bytes(range(256)) * 3 + b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"
