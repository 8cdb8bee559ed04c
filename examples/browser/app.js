// The example page: uses the built SDK (client/dist/ldr-client.js, served at /sdk/) against the local room.
import { createClient } from '/sdk/ldr-client.js';

const $ = (id) => document.getElementById(id);
const log = (...parts) => {
  $('log').textContent += `${parts.map((p) => (typeof p === 'string' ? p : JSON.stringify(p))).join(' ')}\n`;
};
const fromQuery = new URLSearchParams(location.search).get('token');
if (fromQuery) $('token').value = fromQuery;

let client;
let config = '';
// one client per settings; events wait in IndexedDB until the room accepts them, also across reloads
function room() {
  const now = [$('base').value, $('token').value, $('student').value, $('instance').value].join('|');
  if (!client || now !== config) {
    client?.close();
    config = now;
    client = createClient({
      baseUrl: $('base').value,
      token: () => $('token').value.trim(),
      studentId: $('student').value,
      instanceId: $('instance').value,
      flushAt: 1,
      onDelivered: (results) => log('delivered', results),
      onError: (err, events) =>
        log(
          'refused:',
          err.message,
          events.map((e) => e.id),
        ),
    });
  }
  return client;
}

$('answer').onclick = async () => {
  const id = await room().track(
    'quiz_answer',
    { quizId: 'loops-1', correct: $('correct').checked, score: $('correct').checked ? 1 : 0.2 },
    { topic: $('topic').value },
  );
  log('queued quiz answer', id);
};

$('file').onchange = async () => {
  const file = $('file').files[0];
  if (!file) return;
  try {
    const { uri } = await room().upload(file, {
      onProgress: ({ loaded, total }) => {
        $('progress').value = total ? loaded / total : 1;
      },
    });
    log('uploaded', uri);
    await room().track(
      'reflection',
      { text: `my picture ${file.name}` },
      { topic: $('topic').value, artifacts: [uri] },
    );
    const { url } = await room().downloadUrl(uri);
    $('picture').innerHTML = '';
    const img = document.createElement('img');
    img.src = url;
    img.style.maxWidth = '20rem';
    $('picture').append(img);
  } catch (err) {
    log('upload failed:', err.message);
  }
};

$('mastery').onclick = async () => {
  try {
    await room().flush();
    const { topics } = await room().progress($('student').value);
    $('topics').innerHTML = '<tr><th>topic</th><th>mastery</th><th>level</th><th>interactions</th></tr>';
    for (const t of topics) {
      const row = document.createElement('tr');
      for (const v of [t.topic, t.mastery, t.level, t.interactions]) {
        const td = document.createElement('td');
        td.textContent = String(v);
        row.append(td);
      }
      $('topics').append(row);
    }
    if (!topics.length) log('no mastery yet (the first interaction takes a moment to be applied)');
  } catch (err) {
    log('read failed:', err.message);
  }
};
