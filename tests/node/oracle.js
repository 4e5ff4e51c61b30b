// Differential-test oracle for smskit.segments (see tests/test_segments.py).
//
// Reads one JSON request per line on stdin: {"texts": ["...", ...], "graphemes": false}
// and answers each with one JSON line: {"results": [...]} (or {"error": "..."}), where every
// result describes one text as Twilio's sms-segments-calculator sees it (encoding 'auto',
// smart encoding off). The process stays up for the whole test session.
'use strict';

const readline = require('readline');
const { SegmentedMessage } = require('sms-segments-calculator');

function describe(text, withGraphemes) {
  const message = new SegmentedMessage(text, 'auto', false);
  const result = {
    encoding: message.encodingName,
    segments: message.segmentsCount,
    scalars: message.numberOfUnicodeScalars,
    characters: message.numberOfCharacters,
    codeUnits: message.encodedChars.reduce((sum, c) => sum + c.codeUnits.length, 0),
    nonGsm: message.getNonGsmCharacters(),
  };
  if (withGraphemes) {
    result.graphemes = message.graphemes.map((g) => g.length);
  }
  return result;
}

const lines = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
lines.on('line', (line) => {
  let answer;
  try {
    const request = JSON.parse(line);
    answer = { results: request.texts.map((t) => describe(t, Boolean(request.graphemes))) };
  } catch (error) {
    answer = { error: String(error && error.stack ? error.stack : error) };
  }
  process.stdout.write(JSON.stringify(answer) + '\n');
});
