//! Every subscription in one topic tree, and which subscribers a message goes to.
//!
//! A message goes once to each client with a matching ordinary subscription (overlapping
//! subscriptions of one client merge into one delivery at the highest QoS, carrying every
//! subscription identifier), and once to one member of each matching shared subscription
//! group `$share/{group}/{filter}` (round robin, preferring connected members).
//!
//! Each session also lists its own filters (see [`crate::session::FilterList`]), so that
//! ending a session removes exactly its entries.

use std::collections::HashMap;
use std::sync::Arc;

use tinsel_codec::QoS;
use tinsel_codec::topic::parse_shared;

use crate::FastMap;
use crate::session::SubEntry;
use crate::topic_tree::TopicTree;

/// Up to this many distinct subscribers per message, overlapping subscriptions are merged by
/// a linear scan; beyond it, by a map.
const LINEAR_TARGETS: usize = 16;

/// A shared subscription: (group, filter).
type GroupKey = (Arc<str>, Arc<str>);

/// The key of a subscription in the topic tree.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum SubKey {
    /// An ordinary subscription of this client.
    Client(Arc<str>),
    /// A member of shared subscription `$share/{group}/{filter}` (boxed: every key in the
    /// tree is as big as the biggest kind, and most subscriptions are ordinary ones).
    Shared(Box<SharedMember>),
}

/// A member of a shared subscription.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct SharedMember {
    /// The share name.
    group: Arc<str>,
    /// The filter after the group.
    filter: Arc<str>,
    /// The member.
    client: Arc<str>,
}

/// One subscriber a message goes to, with what its subscriptions asked for.
#[derive(Debug)]
pub(crate) struct Target {
    pub(crate) client: Arc<str>,
    /// The highest QoS of its matching subscriptions (the message's own QoS caps it).
    pub(crate) qos: QoS,
    pub(crate) retain_as_published: bool,
    /// Subscription identifiers of its matching subscriptions.
    pub(crate) ids: Vec<u32>,
}

/// Where a message goes.
#[derive(Debug, Default)]
pub(crate) struct Matches {
    /// Subscribers by ordinary subscriptions.
    pub(crate) targets: Vec<Target>,
    /// The member chosen in each matching shared subscription group.
    pub(crate) shared: Vec<Target>,
}

/// The subscription tree and the shared groups' round robin.
#[derive(Default)]
pub(crate) struct Subscriptions {
    tree: TopicTree<SubKey, SubEntry>,
    /// Round-robin position per shared subscription (group, filter).
    shared_next: HashMap<GroupKey, usize>,
    /// The targets list of the last message, given back empty by [`Subscriptions::recycle`]:
    /// routing a message allocates no list. Its capacity is bounded by the most subscribers
    /// one message had.
    spare: Vec<Target>,
}

/// The tree filter and key of a subscription filter as the client wrote it.
fn sub_key<'a>(filter: &'a str, client: &Arc<str>) -> (&'a str, SubKey) {
    match parse_shared(filter) {
        Some((group, inner)) => (
            inner,
            SubKey::Shared(Box::new(SharedMember {
                group: Arc::from(group),
                filter: Arc::from(inner),
                client: client.clone(),
            })),
        ),
        None => (filter, SubKey::Client(client.clone())),
    }
}

impl Subscriptions {
    /// Adds or replaces `client`'s subscription to `filter`; true if it existed.
    pub(crate) fn insert(&mut self, filter: &str, client: &Arc<str>, entry: SubEntry) -> bool {
        let (tree_filter, key) = sub_key(filter, client);
        self.tree.insert(tree_filter, key, entry).is_some()
    }

    /// Removes `client`'s subscription to `filter`; true if it existed.
    pub(crate) fn remove(&mut self, filter: &str, client: &Arc<str>) -> bool {
        let (tree_filter, key) = sub_key(filter, client);
        self.tree.remove(tree_filter, &key).is_some()
    }

    /// Subscriptions in the tree.
    pub(crate) fn len(&self) -> usize {
        self.tree.len()
    }

    /// Where a message on `topic` goes. `publisher` is skipped where its subscription says
    /// No Local; `online` tells connected shared-group members from offline ones.
    pub(crate) fn matches(
        &mut self,
        topic: &str,
        publisher: Option<&Arc<str>>,
        online: impl Fn(&Arc<str>) -> bool,
    ) -> Matches {
        let mut targets = std::mem::take(&mut self.spare);
        targets.clear();
        let mut index: FastMap<Arc<str>, usize> = FastMap::default();
        let mut groups: FastMap<GroupKey, Vec<(Arc<str>, SubEntry)>> = FastMap::default();
        self.tree.for_each_match(topic, |key, entry| match key {
            SubKey::Client(client) => {
                if entry.options.no_local && publisher == Some(client) {
                    return;
                }
                // Few targets: a linear scan; many: a map, built once past the threshold.
                let found = if targets.len() <= LINEAR_TARGETS {
                    targets.iter().position(|t| t.client == *client)
                } else {
                    if index.is_empty() {
                        let all = targets.iter().enumerate();
                        index.extend(all.map(|(i, t)| (t.client.clone(), i)));
                    }
                    index.get(client).copied()
                };
                let i = found.unwrap_or_else(|| {
                    targets.push(Target {
                        client: client.clone(),
                        qos: QoS::AtMostOnce,
                        retain_as_published: false,
                        ids: Vec::new(),
                    });
                    if !index.is_empty() {
                        index.insert(client.clone(), targets.len() - 1);
                    }
                    targets.len() - 1
                });
                let t = &mut targets[i];
                t.qos = t.qos.max(entry.options.qos);
                t.retain_as_published |= entry.options.retain_as_published;
                t.ids.extend(entry.id);
            }
            SubKey::Shared(m) => groups
                .entry((m.group.clone(), m.filter.clone()))
                .or_default()
                .push((m.client.clone(), *entry)),
        });
        let mut shared = Vec::with_capacity(groups.len());
        for (group, mut members) in groups {
            // Round robin over the members, in a stable order, preferring connected ones.
            members.sort_by(|a, b| a.0.cmp(&b.0));
            let n = members.len();
            let start = *self.shared_next.get(&group).unwrap_or(&0) % n;
            let chosen = (0..n)
                .map(|k| (start + k) % n)
                .find(|&i| online(&members[i].0))
                .unwrap_or(start);
            self.shared_next.insert(group, chosen + 1);
            let (client, entry) = members.swap_remove(chosen);
            shared.push(Target {
                client,
                qos: entry.options.qos,
                retain_as_published: entry.options.retain_as_published,
                ids: entry.id.into_iter().collect(),
            });
        }
        Matches { targets, shared }
    }

    /// Gives back the targets list of [`Subscriptions::matches`] for the next message.
    pub(crate) fn recycle(&mut self, mut targets: Vec<Target>) {
        targets.clear();
        self.spare = targets;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ordinary_subscription_key_is_one_pointer_and_a_tag() {
        // The tree holds one key per subscriber of a filter: 10,000 devices subscribed to
        // one topic cost 16,384 map slots of this size (and the entry beside it).
        assert!(
            std::mem::size_of::<SubKey>() <= 24,
            "{}",
            std::mem::size_of::<SubKey>()
        );
    }
}
