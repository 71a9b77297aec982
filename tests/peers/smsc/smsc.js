// A loopback SMSC for outdial's SMPP integration tests, built on the npm `smpp`
// package's createServer (independent code from ours).
//
//   node smsc.js [--port N] [--answer N] [--password PW]
//
// Prints "ready <port>" once listening. Binds of every kind are accepted (a
// wrong --password is refused with ESME_RINVPASWD). Each submit_sm is answered
// with a message id; when registered_delivery asks for one, a delivery receipt
// deliver_sm follows: even ids carry the receipted_message_id/message_state
// TLVs with the text, odd ids the Appendix B text only. With --answer N only
// the first N submits are answered; later ones are held unanswered.
//
// Commands on stdin, one a line:
//   mo <source_addr> <destination_addr> <text...>   send a mobile-originated deliver_sm
//   drop                                            destroy every connection (fault test)
//   stats                                           print "stats <submits> <answered>"
'use strict';

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

let nextId = 1;
let submits = 0;
let answered = 0;
const sessions = new Set();

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
		if (answerLimit >= 0 && answered >= answerLimit) {
			return; // held: never answered
		}
		answered += 1;
		const messageId = (nextId++).toString(16).padStart(8, '0');
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
	if (command === 'mo') {
		const [source, destination, ...words] = rest;
		for (const session of sessions) {
			session.deliver_sm({
				source_addr: source,
				destination_addr: destination,
				short_message: words.join(' '),
			});
		}
		process.stdout.write(`sent mo ${sessions.size}\n`);
	} else if (command === 'drop') {
		for (const session of sessions) {
			session.socket.destroy();
		}
		process.stdout.write('dropped\n');
	} else if (command === 'stats') {
		process.stdout.write(`stats ${submits} ${answered}\n`);
	}
}).on('close', () => process.exit(0));
