// A loopback SMSC for outdial's SMPP integration tests, built on the npm `smpp`
// package's createServer (independent code from ours).
//
//   node smsc.js [--port N] [--answer N] [--password PW] [--log FILE]
//
// Prints "ready <port>" once listening. Binds of every kind are accepted (a
// wrong --password is refused with ESME_RINVPASWD). Each submit_sm is answered
// with a message id; when registered_delivery asks for one, a delivery receipt
// deliver_sm follows: even ids carry the receipted_message_id/message_state
// TLVs with the text, odd ids the Appendix B text only. With --answer N only
// the first N submits are answered; later ones are held unanswered.
//
// --log FILE appends one JSON line per received submit_sm, written before it is
// answered: {"dst", "src", "text" (decoded), "coding", "id" (the message id it
// was answered with, or null when throttled or held)}. The file outlives this
// process and whatever client was killed mid-run.
//
// Commands on stdin, one a line, each answered with one line on stdout:
//   mo <source_addr> <destination_addr> <text...>   send a mobile-originated deliver_sm
//                                                   to every session: "sent mo <sessions>"
//   mo1 <source_addr> <destination_addr> <text...>  the same on one session only
//   mopart <source_addr> <destination_addr> <ref> <total> <seq> <text...>
//                                                   one segment of a concatenated MO on one
//                                                   session: esm_class 0x40 and the 8-bit
//                                                   reference UDH before the text: "sent mopart 1"
//   receipt <message_id> <stat>                     send a delivery receipt for any id (known
//                                                   or not; stat DELIVRD, UNDELIV, EXPIRED,
//                                                   REJECTD...) to every session:
//                                                   "sent receipt <sessions>"
//   throttle <K>                                    answer the next K submit_sm with
//                                                   ESME_RTHROTTLED (0x58): "throttling <K>"
//   hold                                            stop answering submit_sm: "holding"
//   release                                         answer again (the held stay
//                                                   unanswered): "released <held so far>"
//   drop                                            destroy every connection (fault test):
//                                                   "dropped"
//   close                                           unbind every session and close it
//                                                   once answered (destroyed if not within
//                                                   2 s): "closing <sessions>", at once
//   stats                                           print "stats <submits> <answered>"
//   counts                                          print "counts <JSON {destination_addr:
//                                                   submit_sm received}>"
'use strict';

const fs = require('fs');
const readline = require('readline');
const smpp = require('smpp');

const args = process.argv.slice(2);
function option(name, fallback) {
	const i = args.indexOf(name);
	return i >= 0 ? args[i + 1] : fallback;
}
const port = Number(option('--port', '0'));
const answerLimit = Number(option('--answer', '-1'));
const password = option('--password', null);
const logFile = option('--log', null);

let nextId = 1;
let submits = 0;
let answered = 0; // with a message id
let throttleNext = 0;
let holding = false;
let held = 0;
const counts = {};
const sessions = new Set();

const STATES = {
	ENROUTE: smpp.MESSAGE_STATE.ENROUTE,
	DELIVRD: smpp.MESSAGE_STATE.DELIVERED,
	EXPIRED: smpp.MESSAGE_STATE.EXPIRED,
	DELETED: smpp.MESSAGE_STATE.DELETED,
	UNDELIV: smpp.MESSAGE_STATE.UNDELIVERABLE,
	ACCEPTD: smpp.MESSAGE_STATE.ACCEPTED,
	UNKNOWN: smpp.MESSAGE_STATE.UNKNOWN,
	REJECTD: smpp.MESSAGE_STATE.REJECTED,
};

function stamp(date) {
	const p = (n) => String(n).padStart(2, '0');
	return p(date.getUTCFullYear() % 100) + p(date.getUTCMonth() + 1) + p(date.getUTCDate())
		+ p(date.getUTCHours()) + p(date.getUTCMinutes());
}

function receipt(session, submit, messageId) {
	const now = stamp(new Date());
	const text = `id:${messageId} sub:001 dlvrd:001 submit date:${now} done date:${now}`
		+ ` stat:DELIVRD err:000 text:${String(submit.short_message.message || '').slice(0, 20)}`;
	const pdu = {
		source_addr: submit.destination_addr,
		destination_addr: submit.source_addr,
		esm_class: smpp.ESM_CLASS.MC_DELIVERY_RECEIPT,
		short_message: text,
	};
	if (parseInt(messageId, 16) % 2 === 0) {
		pdu.receipted_message_id = messageId;
		pdu.message_state = smpp.MESSAGE_STATE.DELIVERED;
	}
	session.deliver_sm(pdu);
}

// A receipt for an id this SMSC may never have issued: the client must cope.
function arbitraryReceipt(session, messageId, stat) {
	const now = stamp(new Date());
	const state = STATES[stat] === undefined ? smpp.MESSAGE_STATE.UNKNOWN : STATES[stat];
	session.deliver_sm({
		source_addr: '447700900000',
		destination_addr: 'outdial',
		esm_class: smpp.ESM_CLASS.MC_DELIVERY_RECEIPT,
		short_message: `id:${messageId} sub:001 dlvrd:000 submit date:${now} done date:${now}`
			+ ` stat:${stat} err:000 text:`,
		receipted_message_id: messageId,
		message_state: state,
	});
}

function record(pdu, messageId) {
	const destination = pdu.destination_addr;
	counts[destination] = (counts[destination] || 0) + 1;
	if (logFile !== null) {
		const message = pdu.short_message || {};
		const line = JSON.stringify({
			dst: destination,
			src: pdu.source_addr,
			text: typeof message.message === 'string' ? message.message
				: Buffer.from(message.message || []).toString('hex'),
			coding: pdu.data_coding,
			id: messageId,
		});
		fs.appendFileSync(logFile, line + '\n');
	}
}

function closeGracefully(session) {
	// Section 4.2: the SMSC may unbind too; close once the ESME answers.
	const timer = setTimeout(() => session.destroy(), 2000);
	session.socket.once('close', () => clearTimeout(timer));
	if (!session.unbind(() => session.close())) {
		session.destroy();
	}
}

function onBind(session, pdu) {
	if (password !== null && pdu.password !== password) {
		session.send(pdu.response({ command_status: smpp.ESME_RINVPASWD }));
		session.close();
		return;
	}
	session.send(pdu.response({ system_id: 'nodesmsc' }));
}

const server = smpp.createServer((session) => {
	session.socket.setNoDelay(true); // answer each PDU at once, not behind Nagle
	sessions.add(session);
	session.on('close', () => sessions.delete(session));
	session.on('error', () => sessions.delete(session));
	session.on('bind_transceiver', (pdu) => onBind(session, pdu));
	session.on('bind_transmitter', (pdu) => onBind(session, pdu));
	session.on('bind_receiver', (pdu) => onBind(session, pdu));
	session.on('enquire_link', (pdu) => session.send(pdu.response()));
	session.on('unbind', (pdu) => {
		session.send(pdu.response());
		session.close();
	});
	session.on('submit_sm', (pdu) => {
		submits += 1;
		if (holding || (answerLimit >= 0 && answered >= answerLimit)) {
			held += 1;
			record(pdu, null);
			return; // held: never answered
		}
		if (throttleNext > 0) {
			throttleNext -= 1;
			record(pdu, null);
			session.send(pdu.response({ command_status: smpp.ESME_RTHROTTLED }));
			return;
		}
		answered += 1;
		const messageId = (nextId++).toString(16).padStart(8, '0');
		record(pdu, messageId);
		session.send(pdu.response({ message_id: messageId }));
		if (pdu.registered_delivery & 1) {
			setImmediate(() => receipt(session, pdu, messageId));
		}
	});
});

server.listen(port, '127.0.0.1', () => {
	process.stdout.write(`ready ${server.address().port}\n`);
});

readline.createInterface({ input: process.stdin }).on('line', (line) => {
	const [command, ...rest] = line.trim().split(' ');
	if (command === 'mo' || command === 'mo1') {
		// mo: on every session (as the older tests expect); mo1: on one session,
		// as a real SMSC delivers a mobile-originated message once.
		const [source, destination, ...words] = rest;
		const targets = command === 'mo1' ? [...sessions].slice(0, 1) : [...sessions];
		for (const session of targets) {
			session.deliver_sm({
				source_addr: source,
				destination_addr: destination,
				short_message: words.join(' '),
			});
		}
		process.stdout.write(`sent mo ${targets.length}\n`);
	} else if (command === 'mopart') {
		const [source, destination, ref, total, seq, ...words] = rest;
		const udh = Buffer.from([5, 0, 3, Number(ref), Number(total), Number(seq)]);
		const targets = [...sessions].slice(0, 1);
		for (const session of targets) {
			session.deliver_sm({
				source_addr: source,
				destination_addr: destination,
				esm_class: 0x40,
				short_message: Buffer.concat([udh, Buffer.from(words.join(' '), 'ascii')]),
			});
		}
		process.stdout.write(`sent mopart ${targets.length}\n`);
	} else if (command === 'drop') {
		for (const session of sessions) {
			session.socket.destroy();
		}
		process.stdout.write('dropped\n');
	} else if (command === 'receipt') {
		const [messageId, stat] = rest;
		for (const session of sessions) {
			arbitraryReceipt(session, messageId, stat || 'DELIVRD');
		}
		process.stdout.write(`sent receipt ${sessions.size}\n`);
	} else if (command === 'throttle') {
		throttleNext = Number(rest[0] || '1');
		process.stdout.write(`throttling ${throttleNext}\n`);
	} else if (command === 'hold') {
		holding = true;
		process.stdout.write('holding\n');
	} else if (command === 'release') {
		holding = false;
		process.stdout.write(`released ${held}\n`);
	} else if (command === 'close') {
		// Answered at once: the client that must answer the unbind may be waiting on
		// this very line (a test driving the SMSC from inside its event loop).
		for (const session of sessions) {
			closeGracefully(session);
		}
		process.stdout.write(`closing ${sessions.size}\n`);
	} else if (command === 'stats') {
		process.stdout.write(`stats ${submits} ${answered}\n`);
	} else if (command === 'counts') {
		process.stdout.write(`counts ${JSON.stringify(counts)}\n`);
	} else if (command) {
		process.stdout.write(`unknown command ${command}\n`);
	}
}).on('close', () => process.exit(0));
