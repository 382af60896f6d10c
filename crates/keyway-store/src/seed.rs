//! The seed of Seam's fake server, so tests written for it run against Keyway.

use keyway_model::{CodeConstraint, Timestamp};

use crate::accounts::{DeviceCodeRules, NewWorkspace};
use crate::{Result, Store};

/// The seed IDs and API keys (as `/_fake/default_seed` names them).
pub struct SeedIds {
    pub seed_workspace_1: &'static str,
    pub seam_apikey1_token: &'static str,
    pub seed_workspace_2: &'static str,
    pub seam_apikey2_token: &'static str,
    pub john_connected_account_id: &'static str,
    pub jane_connected_account_id: &'static str,
    pub august_device_1: &'static str,
    pub august_device_2: &'static str,
    pub schlage_device_id: &'static str,
}

pub const SEED: SeedIds = SeedIds {
    seed_workspace_1: "seed_workspace_1",
    seam_apikey1_token: "seam_apikey1_token",
    seed_workspace_2: "seed_workspace_2",
    seam_apikey2_token: "seam_apikey2_token",
    john_connected_account_id: "john_connected_account_id",
    jane_connected_account_id: "jane_connected_account_id",
    august_device_1: "august_device_1",
    august_device_2: "august_device_2",
    schlage_device_id: "schlage_device_id",
};

impl SeedIds {
    pub fn as_json(&self) -> serde_json::Value {
        serde_json::json!({
            "seed_workspace_1": self.seed_workspace_1,
            "seam_apikey1_token": self.seam_apikey1_token,
            "seed_workspace_2": self.seed_workspace_2,
            "seam_apikey2_token": self.seam_apikey2_token,
            "john_connected_account_id": self.john_connected_account_id,
            "jane_connected_account_id": self.jane_connected_account_id,
            "august_device_1": self.august_device_1,
            "august_device_2": self.august_device_2,
            "schlage_device_id": self.schlage_device_id,
        })
    }
}

impl Store {
    /// Creates the seed, idempotently. `delay_ms` is the sandbox locks' delay per operation.
    pub async fn seed(&self, delay_ms: u64, now: Timestamp) -> Result<()> {
        let s = &SEED;
        for (id, name, key) in [
            (
                s.seed_workspace_1,
                "Seed Workspace 1 (starts populated)",
                s.seam_apikey1_token,
            ),
            (
                s.seed_workspace_2,
                "Seed Workspace 2 (starts empty)",
                s.seam_apikey2_token,
            ),
        ] {
            self.create_workspace(
                NewWorkspace {
                    workspace_id: Some(id),
                    name,
                    is_sandbox: true,
                    api_key: key,
                },
                now,
            )
            .await?;
        }
        self.insert_connected_account(
            s.seed_workspace_1,
            s.john_connected_account_id,
            "august",
            "john@example.com",
            now,
        )
        .await?;
        self.insert_connected_account(
            s.seed_workspace_1,
            s.jane_connected_account_id,
            "schlage",
            "jane@example.com",
            now,
        )
        .await?;
        let august = DeviceCodeRules {
            supported_code_lengths: vec![4, 5, 6],
            max_active_codes_supported: 250,
            code_constraints: vec![],
            supports_backup_access_code_pool: true,
        };
        let schlage = DeviceCodeRules {
            supported_code_lengths: vec![4, 5, 6, 7, 8],
            max_active_codes_supported: 100,
            code_constraints: vec![CodeConstraint {
                constraint_type: "cannot_start_with_12".into(),
                min_length: None,
                max_length: None,
            }],
            supports_backup_access_code_pool: true,
        };
        for (device_id, account, device_type, name, manufacturer, rules) in [
            (
                s.august_device_1,
                s.john_connected_account_id,
                "august_lock",
                "Front Door",
                "august",
                &august,
            ),
            (
                s.august_device_2,
                s.john_connected_account_id,
                "august_lock",
                "Back Door",
                "august",
                &august,
            ),
            (
                s.schlage_device_id,
                s.jane_connected_account_id,
                "schlage_lock",
                "Bathroom Door",
                "schlage",
                &schlage,
            ),
        ] {
            self.insert_sandbox_device(
                s.seed_workspace_1,
                account,
                device_id,
                device_type,
                name,
                manufacturer,
                rules,
                delay_ms,
                now,
            )
            .await?;
        }
        Ok(())
    }
}
