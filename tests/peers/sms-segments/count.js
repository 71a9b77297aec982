// Test-only peer for tests/unit/test_sms_encoding.py: reads a JSON array of messages
// on stdin and writes, for each, what sms-segments-calculator makes of it.
'use strict';
const { SegmentedMessage } = require('sms-segments-calculator');

let input = '';
process.stdin.setEncoding('utf8');
process.stdin.on('data', (chunk) => { input += chunk; });
process.stdin.on('end', () => {
  const results = JSON.parse(input).map((text) => {
    const message = new SegmentedMessage(text);
    return {
      encoding: message.encodingName,
      segments: message.segmentsCount,
      units: message.encodingName === 'GSM-7' ? message.numberOfCharacters : null,
    };
  });
  process.stdout.write(JSON.stringify(results));
});
