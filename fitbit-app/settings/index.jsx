// Companion settings: the relay, its token, and which training to follow.
// The companion reads these keys (companion/index.js): relay_url, token, training.
function trainingOptions(settings) {
  var options = [{ name: "Latest training", value: "latest" }];
  try {
    var list = JSON.parse(settings.trainings_list || "[]");
    for (var i = 0; i < list.length; i++) {
      options.push({ name: "#" + list[i].id + " " + list[i].name, value: String(list[i].id) });
    }
  } catch (e) {
    // the companion writes the list; an old or broken one only hides the choices
  }
  return options;
}

registerSettingsPage(({ settings }) => (
  <Page>
    <Section title={<Text bold align="center">Relay</Text>}>
      <TextInput
        label="Relay URL"
        placeholder="ws://192.168.0.10:8555"
        settingsKey="relay_url"
      />
      <TextInput label="Token (optional)" settingsKey="token" />
      <Text>
        Android and iOS allow plain ws:// only on some local networks. Use a
        192.168.x.x relay, a TLS relay (wss://) with a public certificate, or a
        relay on the phone itself (ws://127.0.0.1:8555).
      </Text>
    </Section>
    <Section title={<Text bold align="center">Training</Text>}>
      <Select
        label="Follow"
        settingsKey="training"
        options={trainingOptions(settings)}
      />
      <Text>The list comes from the relay's GET /v1/trainings when the companion starts.</Text>
    </Section>
  </Page>
));
