// The events panel: every data-channel event, newest last, each one expandable to its JSON.

const LIMIT = 500;

export class EventLog {
  constructor(list, counter) {
    this.list = list;
    this.counter = counter;
    this.count = 0;
  }

  add(direction, event) {
    const item = document.createElement("li");
    item.className = direction;
    const details = document.createElement("details");
    const summary = document.createElement("summary");
    summary.textContent = `${direction === "sent" ? "↑" : "↓"} ${event.type}`;
    const json = document.createElement("pre");
    json.textContent = JSON.stringify(event, null, 2);
    details.append(summary, json);
    item.append(details);
    this.list.append(item);
    while (this.list.children.length > LIMIT) this.list.firstElementChild.remove();
    this.count += 1;
    this.counter.textContent = String(this.count);
  }

  clear() {
    this.list.replaceChildren();
    this.count = 0;
    this.counter.textContent = "0";
  }
}
